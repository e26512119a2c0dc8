//! Why a store call failed.

use thiserror::Error;

use crate::certfile::CertFileError;

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// etcd could not be reached, did not answer in time, or refused the call.
    #[error("etcd unavailable ({endpoints}): {reason}")]
    Unavailable { endpoints: String, reason: String },
    /// A stored value is not a JSON object (written by hand?).
    #[error("stored value at {key} is not a JSON object: {reason}")]
    Corrupt { key: String, reason: String },
}

/// Why connecting to etcd failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The `deployment.etcd.tls` files cannot be used.
    #[error(transparent)]
    Tls(#[from] CertFileError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
