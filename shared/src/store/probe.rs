//! Telling "etcd is not there (yet)" from "etcd will never accept us".
//!
//! A data plane must start while etcd is down and keep retrying; but a
//! wrong client certificate, an untrusted etcd certificate or refused
//! credentials will not fix themselves, and retrying them forever looks like
//! a hang. The startup probe separates the two: here by the error an etcd
//! call returned, in `handshake` by a TLS session of its own.

use thiserror::Error;

use super::cause::{describe, inner, tls_error};

/// Why the startup probe failed.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// TLS failed or etcd refused our credentials: fix the configuration.
    #[error("etcd at {endpoints} refused the connection: {reason}")]
    Refused { endpoints: String, reason: String },
    /// etcd is down, unreachable or slow: worth retrying.
    #[error("etcd at {endpoints} is unreachable: {reason}")]
    Unreachable { endpoints: String, reason: String },
}

impl ProbeError {
    /// Whether retrying cannot help.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ProbeError::Refused { .. })
    }
}

/// Classifies a failed etcd call.
pub(super) fn classify(endpoints: &str, err: &etcd_client::Error) -> ProbeError {
    let endpoints = endpoints.to_owned();
    match refusal(err) {
        Some(reason) => ProbeError::Refused { endpoints, reason },
        None => ProbeError::Unreachable {
            endpoints,
            reason: describe(err),
        },
    }
}

/// gRPC status codes (fixed by the gRPC specification) that mean "not with
/// these credentials".
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

/// The reason etcd will never accept this client, if that is the case: a
/// TLS error anywhere in the chain, or a gRPC authentication refusal.
fn refusal(err: &etcd_client::Error) -> Option<String> {
    if let etcd_client::Error::GRpcStatus(status) = err {
        if matches!(status.code() as i32, PERMISSION_DENIED | UNAUTHENTICATED) {
            return Some(format!("{:?}: {}", status.code(), status.message()));
        }
    }
    let mut cause = inner(err);
    while let Some(current) = cause {
        if let Some(tls) = tls_error(current) {
            return Some(format!("TLS: {tls}"));
        }
        cause = current.source();
    }
    None
}
