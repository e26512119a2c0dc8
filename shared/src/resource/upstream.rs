use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An upstream (APISIX `upstreams`, or inline in a route).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Upstream {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_time: Option<i64>,
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

fn one() -> u32 {
    1
}
