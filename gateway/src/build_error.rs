//! Why an object of the configuration cannot be built into what serves
//! traffic. Such an object stays in the snapshot and answers an error (a
//! route 503, an upstream without TLS 502) until fixed; `/status` lists it
//! with [`BuildError::kind`] next to the message.

use thiserror::Error;

/// Why a route, or the upstream it uses, cannot serve. Cloned into every
/// route that names a stored upstream which failed to build.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    #[error("methods {methods:?} include an invalid method")]
    Methods { methods: Vec<String> },
    #[error("upstream_id {id:?} does not exist")]
    UpstreamMissing { id: String },
    #[error("pass_host is \"rewrite\" but upstream_host is missing")]
    UpstreamHostMissing,
    #[error("upstream_host {host:?} is not a valid Host header value")]
    UpstreamHost { host: String },
    #[error("node {address} is not a valid address")]
    NodeAddress { address: String },
    /// The upstream's TLS profile (`tls.client_cert_id`, `tls.ca_id`, ...).
    #[error(transparent)]
    UpstreamTls(#[from] UpstreamTlsError),
    /// A plugin could not be built from its validated configuration
    /// (made from `plugins::PluginError`, which sits above this module).
    #[error("plugin {plugin:?}: {reason}")]
    Plugin {
        plugin: &'static str,
        /// The plugin's own kind of failure, e.g. `trust_set`.
        cause: &'static str,
        reason: String,
    },
}

/// Why an upstream's TLS profile cannot be built. Its targets still build
/// and answer 502 with this reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UpstreamTlsError {
    #[error("tls.client_cert_id names SSL object {id}, which does not exist (or is invalid)")]
    ClientCertMissing { id: String },
    #[error("tls.client_cert_id names SSL object {id}, which is not of type \"client\"")]
    ClientCertNotClient { id: String },
    #[error("tls.client_cert_id names SSL object {id}, which is disabled (status 0)")]
    ClientCertDisabled { id: String },
    #[error("tls.ca_id names SSL object {id}, which does not exist (or is invalid)")]
    CaMissing { id: String },
    #[error("tls.ca_id names SSL object {id}, which has no client.ca")]
    CaWithoutClientCa { id: String },
    #[error("tls server name {name:?} is not a DNS name or IP address")]
    ServerName { name: String },
    #[error("CA certificate #{index} cannot be a trust anchor: {reason}")]
    TrustAnchor { index: usize, reason: String },
    #[error("TLS versions: {0}")]
    Versions(String),
    #[error("the client key cannot be used: {0}")]
    ClientKey(String),
}

impl BuildError {
    /// A short fixed name of the cause, usable as a label.
    pub fn kind(&self) -> &'static str {
        match self {
            BuildError::Methods { .. } => "methods",
            BuildError::UpstreamMissing { .. } => "upstream_missing",
            BuildError::UpstreamHostMissing | BuildError::UpstreamHost { .. } => "upstream_host",
            BuildError::NodeAddress { .. } => "node_address",
            BuildError::UpstreamTls(_) => "upstream_tls",
            BuildError::Plugin { .. } => "plugin",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_and_kinds_are_fixed() {
        let missing = BuildError::UpstreamMissing { id: "7".into() };
        assert_eq!(missing.to_string(), "upstream_id \"7\" does not exist");
        assert_eq!(missing.kind(), "upstream_missing");
        let plugin = BuildError::Plugin {
            plugin: "client-cert-auth",
            cause: "trust_set",
            reason: "ca: no CA certificate".into(),
        };
        assert_eq!(
            plugin.to_string(),
            "plugin \"client-cert-auth\": ca: no CA certificate"
        );
        assert_eq!(plugin.kind(), "plugin");
    }
}
