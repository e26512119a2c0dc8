//! SSL objects: certificates, keys, SNIs and client-certificate settings.

use std::time::{SystemTime, UNIX_EPOCH};

use regex::{Regex, RegexSet};
use rustls_pki_types::CertificateDer;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{deserialize, one_or_many, CertKeyPair, HostPattern, OcspStapling, ValidationError};
use crate::client_chain::{
    online_revocation, revocation, verify_depth, OnlineRevocation, Revocation, RevocationSpec,
};
use crate::resource::{ClientSettings, Ssl, SslType};
use crate::x509::{self, CertSummary};

/// Compiled size limit of each `skip_mtls_uri_regex` (and of the set): the
/// regexes run on every request without a client certificate.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A validated SSL object: every PEM parsed, every key matched to its
/// certificate, every regex compiled. The PEM texts are not kept: the
/// parsed (DER) forms are what gets used, and the stored JSON is kept
/// beside this anyway (`crate::state::Stored::raw`).
#[derive(Debug)]
pub struct ValidSsl {
    pub id: String,
    pub kind: SslType,
    /// `status: 1`.
    pub enabled: bool,
    /// From `sni` or `snis`; empty for `type: client`.
    pub snis: Vec<HostPattern>,
    /// `cert`/`key` first, then each `certs[i]`/`keys[i]`.
    pub pairs: Vec<CertKeyPair>,
    pub client: Option<ClientAuth>,
    /// From `ssl_protocols`; empty means the default (TLS 1.2 and 1.3).
    pub protocols: Vec<TlsVersion>,
    /// `ocsp_stapling` when enabled.
    pub ocsp_stapling: Option<OcspStapling>,
    /// Things an operator should know that do not make the object invalid
    /// (e.g. "X.509 v1 certificate").
    pub warnings: Vec<String>,
}

/// Client-certificate verification settings.
#[derive(Debug)]
pub struct ClientAuth {
    /// Trust anchors from `client.ca`.
    pub ca: Vec<CertificateDer<'static>>,
    pub ca_summaries: Vec<CertSummary>,
    /// nginx `ssl_verify_depth` (default 1).
    pub depth: u32,
    /// Compiled `skip_mtls_uri_regex`; `None` when absent or empty, which
    /// means a certificate is required at the handshake.
    pub skip_mtls_uri_regex: Option<RegexSet>,
    /// From `crl`, `crl_mode`, `unknown_status`; `None` without `crl`.
    pub revocation: Option<Revocation>,
    /// From `revocation`; `None` when absent or `mode: off`.
    pub online_revocation: Option<OnlineRevocation>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

pub(super) fn validate(id: &str, value: &Value) -> Result<ValidSsl, ValidationError> {
    let spec: Ssl = deserialize(value, Some(id))?;
    let mut notes = Notes {
        now: unix_now(),
        warnings: Vec::new(),
    };
    let snis = snis(&spec)?;
    let pairs = pairs(&spec, &mut notes)?;
    let client = spec
        .client
        .as_ref()
        .map(|c| client_auth(c, &mut notes))
        .transpose()?;
    let protocols = protocols(spec.ssl_protocols.as_deref().unwrap_or_default())?;
    let ocsp_stapling = spec
        .ocsp_stapling
        .as_ref()
        .filter(|s| s.enabled && spec.kind == SslType::Server)
        .map(|s| OcspStapling::new(s, &pairs))
        .transpose()?;
    Ok(ValidSsl {
        id: id.to_owned(),
        kind: spec.kind,
        enabled: spec.status == 1,
        snis,
        pairs,
        client,
        protocols,
        ocsp_stapling,
        warnings: notes.warnings,
    })
}

/// `type: server` needs exactly one of `sni`/`snis`; `type: client` needs
/// none and ignores them.
fn snis(spec: &Ssl) -> Result<Vec<HostPattern>, ValidationError> {
    if spec.kind == SslType::Client {
        return Ok(Vec::new());
    }
    one_or_many(
        ("sni", spec.sni.as_deref()),
        ("snis", spec.snis.as_deref()),
        HostPattern::parse,
    )?
    .ok_or_else(|| {
        ValidationError::field(
            "sni",
            "one of `sni` or `snis` is required for a server certificate",
        )
    })
}

fn pairs(spec: &Ssl, notes: &mut Notes) -> Result<Vec<CertKeyPair>, ValidationError> {
    if spec.certs.len() != spec.keys.len() {
        return Err(ValidationError::field(
            "keys",
            format!(
                "has {} entries but `certs` has {}: each extra certificate needs its key",
                spec.keys.len(),
                spec.certs.len()
            ),
        ));
    }
    let mut pairs = vec![pair("cert", &spec.cert, "key", &spec.key, notes)?];
    for (i, (cert, key)) in spec.certs.iter().zip(&spec.keys).enumerate() {
        let (cert_field, key_field) = (format!("certs[{i}]"), format!("keys[{i}]"));
        pairs.push(pair(&cert_field, cert, &key_field, key, notes)?);
    }
    Ok(pairs)
}

fn pair(
    cert_field: &str,
    cert_pem: &str,
    key_field: &str,
    key_pem: &str,
    notes: &mut Notes,
) -> Result<CertKeyPair, ValidationError> {
    let pair = CertKeyPair::parse(cert_field, cert_pem, key_field, key_pem)?;
    notes.certificate(cert_field, "certificate", &pair.leaf);
    for (i, der) in pair.chain.iter().enumerate().skip(1) {
        if let Ok(summary) = CertSummary::from_der(der) {
            let what = format!("chain certificate #{i}");
            notes.certificate(cert_field, &what, &summary);
        }
    }
    Ok(pair)
}

/// What validation noticed that does not make the object invalid.
struct Notes {
    /// Unix seconds, read once per object.
    now: i64,
    warnings: Vec<String>,
}

impl Notes {
    /// Adds the warnings an operator should see about one certificate.
    fn certificate(&mut self, field: &str, what: &str, cert: &CertSummary) {
        if cert.version == 1 {
            self.warnings.push(format!(
                "{field}: {what} {} is X.509 v1 (no extensions: no subjectAltName, no basic \
                 constraints); accepted, but consider re-issuing it as v3",
                cert.subject
            ));
        }
        if cert.is_expired_at(self.now) {
            self.warnings.push(format!(
                "{field}: {what} {} expired at {}",
                cert.subject,
                rfc3339(cert.not_after)
            ));
        } else if self.now < cert.not_before {
            self.warnings.push(format!(
                "{field}: {what} {} is not valid before {}",
                cert.subject,
                rfc3339(cert.not_before)
            ));
        }
    }
}

fn client_auth(
    settings: &ClientSettings,
    notes: &mut Notes,
) -> Result<ClientAuth, ValidationError> {
    let ca = x509::parse_certs(&settings.ca)
        .map_err(|e| ValidationError::field("client.ca", e.to_string()))?;
    let mut ca_summaries = ca
        .iter()
        .map(CertSummary::from_der)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ValidationError::field("client.ca", e.to_string()))?;
    ca_summaries.shrink_to_fit();
    for (i, summary) in ca_summaries.iter().enumerate() {
        notes.certificate("client.ca", &format!("CA certificate #{i}"), summary);
    }
    let depth = verify_depth("client", settings.depth)?;
    let skip_mtls_uri_regex =
        skip_regexes(settings.skip_mtls_uri_regex.as_deref().unwrap_or_default())?;
    let revocation = revocation(
        "client",
        RevocationSpec {
            crl: settings.crl.as_deref(),
            mode: settings.crl_mode,
            unknown_status: settings.unknown_status,
        },
        &ca,
    )?;
    for stale in revocation.iter().flat_map(|r| r.stale_crls(notes.now)) {
        notes.warnings.push(format!("client.crl: {stale}"));
    }
    let online_revocation = online_revocation("client", settings.revocation.as_ref())?;
    Ok(ClientAuth {
        ca,
        ca_summaries,
        depth,
        skip_mtls_uri_regex,
        revocation,
        online_revocation,
    })
}

/// Compiles each regex on its own first, to name the one that fails.
fn skip_regexes(patterns: &[String]) -> Result<Option<RegexSet>, ValidationError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    for (i, pattern) in patterns.iter().enumerate() {
        regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(|_: Regex| ())
            .map_err(|e| {
                ValidationError::field(format!("client.skip_mtls_uri_regex[{i}]"), e.to_string())
            })?;
    }
    regex::RegexSetBuilder::new(patterns)
        .size_limit(REGEX_SIZE_LIMIT * patterns.len())
        .build()
        .map(Some)
        .map_err(|e| ValidationError::field("client.skip_mtls_uri_regex", e.to_string()))
}

fn protocols(names: &[String]) -> Result<Vec<TlsVersion>, ValidationError> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| match name.as_str() {
            "TLSv1.2" => Ok(TlsVersion::Tls12),
            "TLSv1.3" => Ok(TlsVersion::Tls13),
            other => Err(ValidationError::field(
                format!("ssl_protocols[{i}]"),
                format!("{other:?} is not supported (use \"TLSv1.2\" or \"TLSv1.3\")"),
            )),
        })
        .collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("unix time {unix}"))
}
