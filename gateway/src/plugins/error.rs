//! Why a plugin could not be built from its validated configuration.
//!
//! Validation ([`shared::plugins`]) has already refused anything the admin
//! API would refuse; what remains are the gateway's own resources, such as
//! a trust set made from a route's CAs.

use thiserror::Error;

use crate::tls::TrustError;

/// Why one plugin could not be built.
#[derive(Debug, Error)]
pub enum BuildError {
    /// `client-cert-auth`: the route's CAs and CRLs make no trust set.
    #[error("ca: {0}")]
    TrustSet(#[from] TrustError),
    /// `forward-client-cert`: `by` cannot be written in a header.
    #[error("by {0:?} cannot be sent")]
    Unsendable(String),
}

impl BuildError {
    /// A stable name for the kind of failure, for `/status` and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            BuildError::TrustSet(_) => "trust_set",
            BuildError::Unsendable(_) => "unsendable_value",
        }
    }
}

/// Why a route's plugin chain could not be built: the plugin, and why.
#[derive(Debug, Error)]
#[error("plugin {plugin:?}: {source}")]
pub struct PluginError {
    pub plugin: &'static str,
    #[source]
    pub source: BuildError,
}

impl From<PluginError> for crate::build_error::BuildError {
    fn from(err: PluginError) -> Self {
        crate::build_error::BuildError::Plugin {
            plugin: err.plugin,
            cause: err.source.kind(),
            reason: err.source.to_string(),
        }
    }
}
