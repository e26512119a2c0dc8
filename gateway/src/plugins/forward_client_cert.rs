//! `forward-client-cert`: tells the upstream who the client is, in Envoy's
//! `X-Forwarded-Client-Cert` (XFCC) and/or RFC 9440's `Client-Cert` /
//! `Client-Cert-Chain`. XFCC follows Envoy's `forward_client_cert_details`
//! modes:
//!
//! | `mode` | verified client | otherwise |
//! |---|---|---|
//! | `sanitize` (default) | XFCC removed | removed |
//! | `forward_only` | the client's XFCC kept | removed |
//! | `append_forward` | ours appended to the client's XFCC | removed |
//! | `sanitize_set` | the client's XFCC replaced by ours | removed |
//! | `always_forward_only` | the client's XFCC kept | kept |
//!
//! The RFC 9440 headers a client sends are removed in every mode (RFC 9440
//! §4: a proxy must sanitize them); with `format: rfc9440` or `both`,
//! `append_forward` and `sanitize_set` set ours for a verified client.
//!
//! "Verified client" means a certificate this route (`client-cert-auth`) or
//! the SSL object verified: a certificate nobody verified is never
//! forwarded. Identity headers of a format the route does not forward are
//! always removed, so no client can speak for the gateway in them. Routes
//! without this plugin remove all three headers (see [`crate::proxy`]).
//!
//! An XFCC element is `By=…;Hash=…;Cert="…";Chain="…";Subject="…";URI=…;DNS=…`
//! in that order: `Hash` (SHA-256 of the DER, hex) always, `By` when
//! configured, the others as listed in `details`.

use std::ops::ControlFlow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use shared::plugins::forward_client_cert::{self as config, Detail, Mode};

use super::identity::{self, verified_client};
use super::{Build, BuildError, Flow, Plugin, RequestCtx};
use crate::context::PeerCert;

pub(super) const NAME: &str = config::NAME;

const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
const CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");
const CLIENT_CERT_CHAIN: HeaderName = HeaderName::from_static("client-cert-chain");

struct ForwardClientCert {
    mode: Mode,
    /// Removed before anything else: RFC 9440's headers, and XFCC when it
    /// is not a configured format.
    dropped: Vec<HeaderName>,
    xfcc: bool,
    rfc9440: bool,
    /// In Envoy's order.
    details: Vec<Detail>,
    by: Option<String>,
}

impl Build for config::ForwardClientCert {
    const PRIORITY: i32 = 2410;

    fn build(&self) -> Result<Box<dyn Plugin>, BuildError> {
        let (xfcc, rfc9440) = (self.format.xfcc(), self.format.rfc9440());
        let mut dropped = vec![CLIENT_CERT, CLIENT_CERT_CHAIN];
        if !xfcc {
            dropped.push(XFCC);
        }
        if let Some(by) = &self.by {
            HeaderValue::from_str(&xfcc_value(by))
                .map_err(|_| BuildError::Unsendable(by.clone()))?;
        }
        Ok(Box::new(ForwardClientCert {
            mode: self.mode,
            dropped,
            xfcc,
            rfc9440,
            details: self.details.clone(),
            by: self.by.clone(),
        }))
    }
}

impl Plugin for ForwardClientCert {
    fn name(&self) -> &'static str {
        NAME
    }

    fn request_filter(&self, ctx: &mut RequestCtx<'_>, req: &mut Parts) -> Flow {
        for name in &self.dropped {
            req.headers.remove(name);
        }
        let client = verified_client(ctx);
        match (self.mode, client) {
            (Mode::AlwaysForwardOnly, _) | (Mode::ForwardOnly, Some(_)) => {}
            (Mode::Sanitize, _) | (_, None) => self.remove(req),
            (Mode::AppendForward, Some(cert)) => self.set(req, cert, true),
            (Mode::SanitizeSet, Some(cert)) => self.set(req, cert, false),
        }
        ControlFlow::Continue(())
    }
}

impl ForwardClientCert {
    /// Removes the client's XFCC (RFC 9440's are gone already).
    fn remove(&self, req: &mut Parts) {
        if self.xfcc {
            req.headers.remove(XFCC);
        }
    }

    /// Sets our headers; with `append`, our XFCC element goes after the
    /// client's (RFC 9440 headers describe one certificate: always set).
    fn set(&self, req: &mut Parts, cert: &PeerCert, append: bool) {
        if self.xfcc {
            let element = self.xfcc_element(cert);
            let previous = append.then(|| joined(req, &XFCC)).flatten();
            let value = match previous {
                Some(previous) => format!("{previous},{element}"),
                None => element,
            };
            set_or_remove(req, XFCC, &value);
        }
        if self.rfc9440 {
            set_or_remove(req, CLIENT_CERT, &byte_sequence(cert.der.as_ref()));
            let chain: Vec<String> = cert
                .intermediates
                .iter()
                .map(|der| byte_sequence(der.as_ref()))
                .collect();
            if chain.is_empty() {
                req.headers.remove(CLIENT_CERT_CHAIN);
            } else {
                set_or_remove(req, CLIENT_CERT_CHAIN, &chain.join(", "));
            }
        }
    }

    fn xfcc_element(&self, cert: &PeerCert) -> String {
        let mut pairs = Vec::new();
        if let Some(by) = &self.by {
            pairs.push(format!("By={}", xfcc_value(by)));
        }
        pairs.push(format!("Hash={}", cert.summary.fingerprint_sha256));
        for detail in &self.details {
            match detail {
                Detail::Cert => pairs.push(format!(
                    "Cert={}",
                    quoted(&identity::escaped_pem(cert.der.as_ref()))
                )),
                Detail::Chain => {
                    let chain: String = std::iter::once(&cert.der)
                        .chain(&cert.intermediates)
                        .map(|der| identity::escaped_pem(der.as_ref()))
                        .collect();
                    pairs.push(format!("Chain={}", quoted(&chain)));
                }
                Detail::Subject => pairs.push(format!("Subject={}", quoted(&cert.summary.subject))),
                Detail::Uri => pairs.extend(sans(cert, "URI:").map(|uri| format!("URI={uri}"))),
                Detail::Dns => pairs.extend(sans(cert, "DNS:").map(|dns| format!("DNS={dns}"))),
            }
        }
        pairs.join(";")
    }
}

/// The SANs with `prefix`, written as XFCC values (SANs holding control
/// characters are left out: they cannot travel in a header).
fn sans<'a>(cert: &'a PeerCert, prefix: &'a str) -> impl Iterator<Item = String> + 'a {
    cert.summary
        .sans
        .iter()
        .filter_map(move |san| san.strip_prefix(prefix))
        .filter(|value| !value.chars().any(char::is_control))
        .map(xfcc_value)
}

/// A value quoted when it holds an XFCC separator, a quote or a space.
fn xfcc_value(value: &str) -> String {
    if value
        .chars()
        .any(|c| matches!(c, ',' | ';' | '=' | '"' | '\\') || c.is_whitespace())
    {
        quoted(value)
    } else {
        value.to_owned()
    }
}

/// `"value"`, with `"` and `\` escaped by a backslash.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// An RFC 8941 byte sequence: `:base64:`.
fn byte_sequence(der: &[u8]) -> String {
    format!(":{}:", STANDARD.encode(der))
}

/// Every value of `name` joined by `,` (XFCC elements are `,`-separated).
fn joined(req: &Parts, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = req
        .headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn set_or_remove(req: &mut Parts, name: HeaderName, value: &str) {
    match identity::header_value(value) {
        Some(value) => {
            req.headers.insert(name, value);
        }
        None => {
            req.headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests;
