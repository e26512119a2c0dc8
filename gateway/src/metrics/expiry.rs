//! `portcullis_certificate_expiry_seconds`: seconds until `notAfter` of every
//! certificate in use, computed at scrape time from the validated objects
//! (the same `notAfter` the admin API's SSL `info` reports) and from the
//! certificate files of `config.yaml`, re-read per scrape so that a rotated
//! file shows its new date.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use shared::resource::SslType;
use shared::state::ConfigState;
use shared::validate::{ClientIdentity, UpstreamRef, ValidSsl, ValidUpstream};
use shared::x509::{self, CertSummary};

use super::metrics;

/// One certificate in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CertExpiry {
    /// `server`, `client_ca`, `upstream_client` or `file`.
    pub(crate) kind: &'static str,
    /// The SSL object, `upstream/<id>`, `route/<id>` or the file's path.
    pub(crate) id: String,
    pub(crate) subject: String,
    /// Unix seconds.
    pub(crate) not_after: i64,
}

static FILES: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// The certificate files of `config.yaml` (etcd and admin TLS) to report on;
/// set once at startup.
pub fn watch_files(files: Vec<PathBuf>) {
    let _ = FILES.set(files);
}

/// Publishes the gauges for the certificates of `state` and the watched
/// files at `now` (unix seconds).
pub(crate) fn publish(state: Option<&ConfigState>, now: i64) {
    let mut certs = state.map(in_state).unwrap_or_default();
    let files = FILES.get().into_iter().flatten().map(PathBuf::as_path);
    certs.extend(files.flat_map(in_file));
    let metrics = metrics();
    metrics.cert_expiry.reset();
    for cert in &certs {
        metrics
            .cert_expiry
            .with_label_values(&[cert.kind, &cert.id, &cert.subject])
            .set((cert.not_after - now) as f64);
    }
    let earliest = certs.iter().map(|c| c.not_after).min();
    // No certificate: nothing expires; +Inf keeps "earliest < X" alerts quiet.
    metrics
        .earliest_expiry
        .set(earliest.map_or(f64::INFINITY, |at| (at - now) as f64));
}

/// Every certificate the enabled objects of `state` use.
pub(crate) fn in_state(state: &ConfigState) -> Vec<CertExpiry> {
    let mut certs = Vec::new();
    for stored in state.ssls.values() {
        ssl_certs(&stored.value, &mut certs);
    }
    for stored in state.upstreams.values() {
        let id = format!(
            "upstream/{}",
            stored.value.id.as_deref().unwrap_or_default()
        );
        upstream_certs(&stored.value, id, &mut certs);
    }
    for stored in state.routes.values() {
        if let UpstreamRef::Inline(upstream) = &stored.value.upstream {
            upstream_certs(upstream, format!("route/{}", stored.value.id), &mut certs);
        }
    }
    certs
}

fn ssl_certs(ssl: &ValidSsl, certs: &mut Vec<CertExpiry>) {
    if !ssl.enabled {
        return;
    }
    let kind = match ssl.kind {
        SslType::Server => "server",
        SslType::Client => "upstream_client",
    };
    for pair in &ssl.pairs {
        certs.push(expiry(kind, &ssl.id, &pair.leaf));
    }
    for ca in ssl.client.iter().flat_map(|client| &client.ca_summaries) {
        certs.push(expiry("client_ca", &ssl.id, ca));
    }
}

fn upstream_certs(upstream: &ValidUpstream, id: String, certs: &mut Vec<CertExpiry>) {
    let identity = upstream.tls.as_ref().and_then(|tls| tls.identity.as_ref());
    if let Some(ClientIdentity::Inline(pair)) = identity {
        certs.push(expiry("upstream_client", &id, &pair.leaf));
    }
}

fn expiry(kind: &'static str, id: &str, cert: &CertSummary) -> CertExpiry {
    CertExpiry {
        kind,
        id: id.to_owned(),
        subject: cert.subject.clone(),
        not_after: cert.not_after,
    }
}

/// Every certificate of a PEM file; none when it cannot be read (the
/// process already refused such a file at start, and logs rotation errors).
fn in_file(path: &Path) -> Vec<CertExpiry> {
    let id = path.display().to_string();
    let Ok(pem) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    x509::parse_certs(&pem)
        .unwrap_or_default()
        .iter()
        .filter_map(|der| CertSummary::from_der(der).ok())
        .map(|cert| expiry("file", &id, &cert))
        .collect()
}
