//! Reading an etcd error's causes: the one-line reason logged and returned,
//! and the TLS error buried in it, if any. The bottom of `store`: it
//! imports none of its siblings.

use std::error::Error as StdError;

/// A one-line reason for an etcd error: the gRPC message rather than the
/// status's debug dump, and the causes behind it.
pub(super) fn describe(err: &etcd_client::Error) -> String {
    let mut reason = match err {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    };
    let mut source = inner(err).and_then(StdError::source);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

/// Where the cause chain of an etcd error starts (`etcd_client::Error`
/// does not expose it through `source()`).
pub(super) fn inner(err: &etcd_client::Error) -> Option<&(dyn StdError + 'static)> {
    match err {
        etcd_client::Error::GRpcStatus(status) => Some(status),
        etcd_client::Error::TransportError(transport) => Some(transport),
        etcd_client::Error::IoError(io) => Some(io),
        _ => None,
    }
}

/// A rustls error, directly or wrapped in the `io::Error` that tokio-rustls
/// returns (whose `source()` skips the wrapped error itself).
pub(super) fn tls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    err.downcast_ref::<std::io::Error>()?
        .get_ref()?
        .downcast_ref::<rustls::Error>()
}
