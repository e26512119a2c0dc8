use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Metadata;

/// An upstream (APISIX `upstreams`, or inline in a route).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Upstream {
    #[serde(flatten)]
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub nodes: Nodes,
    /// Load-balancing algorithm; only `roundrobin` (weighted) is supported.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub scheme: Scheme,
    #[serde(default)]
    pub pass_host: PassHost,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// TLS towards `scheme: https` nodes: client identity, trust, SNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
}

/// `nodes`: either `{"host:port": weight}` or `[{"host", "port", "weight"}]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Nodes {
    Map(BTreeMap<String, u32>),
    List(Vec<Node>),
}

impl Default for Nodes {
    fn default() -> Self {
        Nodes::List(Vec::new())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Node {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default = "one")]
    pub weight: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

/// Which `Host` header the upstream sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PassHost {
    /// The client's `Host`.
    #[default]
    Pass,
    /// The selected node's `host[:port]`.
    Node,
    /// `upstream_host`.
    Rewrite,
}

/// Timeouts in seconds (fractions allowed), as APISIX.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Timeout {
    pub connect: f64,
    pub send: f64,
    pub read: f64,
}

/// `tls` of an upstream. The client identity is either inline
/// (`client_cert` + `client_key`) or an SSL object of `type: client`
/// (`client_cert_id`); the trust roots are the webpki roots by default,
/// `ca` (PEM) or the `client.ca` of the SSL object `ca_id`.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct UpstreamTls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// The private key, PEM. Never returned by the admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::optional_id"
    )]
    pub client_cert_id: Option<String>,
    /// Verify the upstream's certificate (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::optional_id"
    )]
    pub ca_id: Option<String>,
    /// The server name sent and verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
}

impl fmt::Debug for UpstreamTls {
    /// Never prints the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("client_cert", &self.client_cert.as_ref().map(|_| "<PEM>"))
            .field(
                "client_key",
                &self.client_key.as_ref().map(|_| "<redacted>"),
            )
            .field("client_cert_id", &self.client_cert_id)
            .field("verify", &self.verify)
            .field("ca", &self.ca.as_ref().map(|_| "<PEM>"))
            .field("ca_id", &self.ca_id)
            .field("sni", &self.sni)
            .finish()
    }
}

fn one() -> u32 {
    1
}
