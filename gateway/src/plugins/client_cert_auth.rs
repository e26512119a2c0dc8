//! `client-cert-auth`: per-route client certificates, as WSO2 APK's mTLS
//! authentication. A route accepts a certificate that is exactly one of its
//! `certificates` (pinning) or that chains to one of its `ca` (path, depth,
//! validity dates, CRLs). `required: mandatory` answers 401 with
//! `WWW-Authenticate: Mutual SSL realm="portcullis"` to a client without an
//! accepted certificate; `optional` lets a client without one through, but
//! a certificate that is sent must be accepted.
//!
//! Each route judges with its own trust set, so routes under one SNI can
//! trust different CAs: the handshake asks for an optional certificate
//! listing every such route's CAs (see `crate::tls::RouteCertRequests`) and
//! never fails on it; the verdict is taken here, per request. Everything the
//! verdict needs (anchors, CRLs, pinned set) is built with the route, and an
//! acceptance of the handshake's certificate is remembered for the rest of
//! the connection while it cannot change (see [`accepted`]).
//!
//! With `cert_header`, a front proxy that terminated TLS passes the
//! client's certificate in a header. The header is believed only from
//! `trusted_sources`, or from a proxy that presented one of the
//! `trusted_certificates` in the handshake; from anyone else, including a
//! client this route accepts, it is removed and ignored. A certificate from
//! the header is then judged exactly like one from the handshake.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use http::header::WWW_AUTHENTICATE;
use http::request::Parts;
use http::{HeaderName, HeaderValue, StatusCode};
use rustls_pki_types::{CertificateDer, UnixTime};
use shared::client_chain::Revocation;
use shared::plugins::client_cert_auth::{
    CertHeader, ClientCertAuth, Requirement, CLIENT_CERT_AUTH,
};
use shared::x509::{CertSummary, X509Error};
use thiserror::Error;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use self::accepted::AcceptedCerts;
use super::cert_header::{self, CertHeaderError};
use super::identity::RouteIdentity;
use super::{Build, BuildError, Flow, Plugin, RequestCtx};
use crate::context::{ClientCert, PeerCert};
use crate::metrics::tls::{client_cert_verdict as record_verdict, Verdict};
use crate::metrics::HandshakeFailure;
use crate::reply::json_reply;
use crate::tls::{ClientCertError, TrustSet};

pub(super) const NAME: &str = CLIENT_CERT_AUTH;

const REALM: &str = r#"Mutual SSL realm="portcullis""#;
const MISSING: &str = r#"{"message":"a client certificate is required"}"#;
const REFUSED: &str = r#"{"message":"the client certificate is not accepted"}"#;

struct ClientCertAuthPlugin {
    required: Requirement,
    /// Pinned certificates, minus those a configured CRL revokes.
    pinned: HashSet<CertificateDer<'static>>,
    trust: Option<TrustSet>,
    /// The handshake certificates `trust` accepted, per connection.
    accepted: AcceptedCerts,
    header: Option<TrustedHeader>,
}

struct TrustedHeader {
    name: HeaderName,
    config: CertHeader,
    /// The front proxies' certificates (`trusted_certificates`), moved out
    /// of `config` for a lookup per request.
    proxies: HashSet<CertificateDer<'static>>,
}

impl TrustedHeader {
    /// Whether the peer is a front proxy whose header is believed: one of
    /// the trusted sources, or holding one of the trusted certificates
    /// (rustls checked that it holds the key) within its validity dates.
    fn trusts(&self, ctx: &RequestCtx<'_>, handshake: Option<&Arc<PeerCert>>) -> bool {
        self.config.trusts(ctx.conn.remote_addr.ip())
            || handshake.is_some_and(|proxy| {
                self.proxies.contains(&proxy.der)
                    && within_validity(&proxy.summary, UnixTime::now()).is_ok()
            })
    }
}

/// What the client presented to this route.
enum Presented {
    None,
    /// The connection's certificate.
    Handshake(Arc<PeerCert>),
    /// A trusted front proxy's header, read for this request.
    Header(PeerCert),
    /// A header that should have held a certificate did not.
    Unreadable(HeaderCertError),
}

impl Build for ClientCertAuth {
    const PRIORITY: i32 = 2540;

    fn build(&self) -> Result<Box<dyn Plugin>, BuildError> {
        Ok(Box::new(ClientCertAuthPlugin::new(self)?))
    }
}

impl ClientCertAuthPlugin {
    fn new(config: &ClientCertAuth) -> Result<ClientCertAuthPlugin, BuildError> {
        let algs = crate::tls::provider().signature_verification_algorithms;
        let trust = (!config.ca.is_empty())
            .then(|| {
                let online = config.online_revocation.as_ref();
                TrustSet::new(
                    &config.ca,
                    config.depth,
                    config.revocation.as_ref(),
                    online,
                    algs,
                )
            })
            .transpose()?;
        let header = config.cert_header.clone().map(|mut header| {
            let proxies = std::mem::take(&mut header.trusted_certificates);
            TrustedHeader {
                name: header.name.clone(),
                proxies: proxies.into_iter().collect(),
                config: header,
            }
        });
        Ok(ClientCertAuthPlugin {
            required: config.required,
            pinned: pinned(&config.certificates, config.revocation.as_ref()),
            accepted: AcceptedCerts::new(&config.ca, config.revocation.as_ref()),
            trust,
            header,
        })
    }
}

/// The pinned certificates no configured CRL revokes. (A CRL names a
/// certificate by issuer and serial; the operator configured both lists, so
/// a CRL's word is taken here even without its issuer's key.)
fn pinned(
    certificates: &[CertificateDer<'static>],
    revocation: Option<&Revocation>,
) -> HashSet<CertificateDer<'static>> {
    let revoked: HashSet<(Vec<u8>, Vec<u8>)> = revocation
        .into_iter()
        .flat_map(|revocation| &revocation.crls)
        .filter_map(|der| CertificateRevocationList::from_der(der.as_ref()).ok())
        .flat_map(|(_, crl)| {
            let issuer = crl.issuer().as_raw().to_vec();
            crl.iter_revoked_certificates()
                .map(|revoked| (issuer.clone(), revoked.raw_serial().to_vec()))
                .collect::<Vec<_>>()
        })
        .collect();
    certificates
        .iter()
        .filter(|der| {
            let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
                return false;
            };
            let key = (cert.issuer().as_raw().to_vec(), cert.raw_serial().to_vec());
            let is_revoked = revoked.contains(&key);
            if is_revoked {
                tracing::warn!(
                    subject = %cert.subject(),
                    "client-cert-auth: a pinned certificate is revoked by a configured CRL; \
                     it is not accepted"
                );
            }
            !is_revoked
        })
        .cloned()
        .collect()
}

impl ClientCertAuthPlugin {
    /// Whether this route accepts `cert` at `now`; the error says why not.
    fn accepts(&self, cert: &PeerCert, now: UnixTime) -> Result<(), ClientCertError> {
        if self.pinned.contains(&cert.der) {
            return within_validity(&cert.summary, now);
        }
        match &self.trust {
            Some(trust) => trust.verify(&cert.der, &cert.intermediates, now).map(drop),
            None => Err(ClientCertError::Rejected(
                "not one of the pinned certificates".into(),
            )),
        }
    }

    /// [`Self::accepts`] for the connection's own certificate: the chain is
    /// verified on the connection's first request, and again only once the
    /// acceptance could have changed.
    fn accepts_handshake(&self, cert: &Arc<PeerCert>) -> Result<(), ClientCertError> {
        let now = UnixTime::now();
        let secs = unix_secs(now);
        if self.accepted.holds(cert, secs) {
            return Ok(());
        }
        self.accepts(cert, now)?;
        if !self.pinned.contains(&cert.der) {
            self.accepted.insert(cert, secs);
        }
        Ok(())
    }

    fn presented(&self, ctx: &RequestCtx<'_>, req: &mut Parts) -> Presented {
        let handshake = handshake_cert(ctx);
        let from_handshake = || {
            handshake.map_or(Presented::None, |cert| {
                Presented::Handshake(Arc::clone(cert))
            })
        };
        let Some(header) = &self.header else {
            return from_handshake();
        };
        let values: Vec<HeaderValue> = req.headers.get_all(&header.name).iter().cloned().collect();
        let Some(value) = values.first() else {
            return from_handshake();
        };
        if !header.trusts(ctx, handshake) {
            tracing::debug!(
                route = ctx.route_id,
                peer = %ctx.conn.remote_addr,
                header = %header.name,
                "client-cert-auth: certificate header from an untrusted peer removed"
            );
            req.headers.remove(&header.name);
            return from_handshake();
        }
        if values.len() > 1 {
            return Presented::Unreadable(HeaderCertError::Repeated);
        }
        match header_cert(value, &header.config) {
            Ok(cert) => Presented::Header(cert),
            Err(reason) => Presented::Unreadable(reason),
        }
    }

    fn refuse(
        &self,
        ctx: &RequestCtx<'_>,
        body: &'static str,
        reason: &str,
        label: &'static str,
    ) -> Flow {
        record_verdict(NAME, ctx.route_id, Verdict::Refused(label));
        tracing::info!(
            route = ctx.route_id,
            reason,
            "client-cert-auth: request refused"
        );
        let mut response = json_reply(StatusCode::UNAUTHORIZED, body);
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
        ControlFlow::Break(response)
    }
}

impl Plugin for ClientCertAuthPlugin {
    fn name(&self) -> &'static str {
        NAME
    }

    fn request_filter(&self, ctx: &mut RequestCtx<'_>, req: &mut Parts) -> Flow {
        let (cert, verdict) = match self.presented(ctx, req) {
            Presented::Handshake(cert) => {
                let verdict = self.accepts_handshake(&cert);
                (cert, verdict)
            }
            Presented::Header(cert) => {
                let verdict = self.accepts(&cert, UnixTime::now());
                (Arc::new(cert), verdict)
            }
            Presented::None if self.required == Requirement::Optional => {
                return ControlFlow::Continue(())
            }
            Presented::None => {
                return self.refuse(ctx, MISSING, "no client certificate", "no_certificate")
            }
            Presented::Unreadable(reason) => {
                return self.refuse(ctx, REFUSED, &reason.to_string(), "unreadable")
            }
        };
        if let Err(err) = verdict {
            let reason = format!("{} ({err})", cert.summary.subject);
            let label = HandshakeFailure::of_client_cert(&err).as_str();
            return self.refuse(ctx, REFUSED, &reason, label);
        }
        record_verdict(NAME, ctx.route_id, Verdict::Allowed);
        ctx.extensions.insert(RouteIdentity(cert));
        ControlFlow::Continue(())
    }
}

/// The certificate the client presented in the handshake, whatever the SSL
/// object thought of it: this route judges it against its own trust set.
fn handshake_cert<'a>(ctx: &'a RequestCtx<'_>) -> Option<&'a Arc<PeerCert>> {
    match &ctx.conn.tls.as_ref()?.client_cert {
        ClientCert::Verified(cert) | ClientCert::Failed { cert, .. } => Some(cert),
        ClientCert::None => None,
    }
}

/// Why a trusted front proxy's certificate header holds no usable
/// certificate.
#[derive(Debug, Error)]
enum HeaderCertError {
    #[error("the certificate header is repeated")]
    Repeated,
    #[error("certificate header: {0}")]
    Decode(#[from] CertHeaderError),
    #[error("certificate header: {0}")]
    Unparsable(#[from] X509Error),
    /// 1-based, as an operator counts the certificates of a header.
    #[error(
        "certificate header: certificate #{0} is not a CA certificate; a header holds \
         one client certificate, then only its CA chain"
    )]
    NotCa(usize),
}

fn header_cert(value: &HeaderValue, config: &CertHeader) -> Result<PeerCert, HeaderCertError> {
    let mut chain = cert_header::decode(value.as_bytes(), config.encoding)?;
    let der = chain.remove(0);
    only_cas(&chain)?;
    let summary = CertSummary::from_der(&der)?;
    Ok(PeerCert {
        der,
        summary,
        intermediates: chain,
    })
}

/// The certificates after the first in a header can only be its chain:
/// every one a CA certificate. A front proxy that appends its own client's
/// certificate to a header the client already filled (Envoy's XFCC in
/// `APPEND_FORWARD`) would otherwise have the client's word read as the
/// leaf; such a header is refused rather than guessed at.
fn only_cas(chain: &[CertificateDer<'static>]) -> Result<(), HeaderCertError> {
    for (i, der) in chain.iter().enumerate() {
        let is_ca = X509Certificate::from_der(der.as_ref()).is_ok_and(|(_, cert)| cert.is_ca());
        if !is_ca {
            return Err(HeaderCertError::NotCa(i + 2));
        }
    }
    Ok(())
}

fn within_validity(summary: &CertSummary, now: UnixTime) -> Result<(), ClientCertError> {
    let now = unix_secs(now);
    if now < summary.not_before {
        return Err(ClientCertError::NotYetValid);
    }
    if summary.is_expired_at(now) {
        return Err(ClientCertError::Expired);
    }
    Ok(())
}

fn unix_secs(now: UnixTime) -> i64 {
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

mod accepted;

#[cfg(test)]
mod tests;
