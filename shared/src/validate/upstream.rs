use std::time::Duration;

use serde_json::Value;

use super::ValidationError;
use crate::resource::{PassHost, Scheme, Upstream};

/// A validated upstream.
#[derive(Debug)]
pub struct ValidUpstream {
    /// `None` for an upstream inline in a route.
    pub id: Option<String>,
    pub spec: Upstream,
    /// Nodes with a weight above zero, in a stable order.
    pub nodes: Vec<UpstreamNode>,
    pub scheme: Scheme,
    pub pass_host: PassHost,
    /// Required when `pass_host` is `rewrite`.
    pub upstream_host: Option<String>,
    pub timeouts: Timeouts,
    /// Extra attempts on another node after a connect failure.
    pub retries: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamNode {
    pub host: String,
    /// Defaults to 80 for http, 443 for https.
    pub port: u16,
    pub weight: u32,
}

/// Defaults as APISIX: 60 s each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub send: Duration,
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let minute = Duration::from_secs(60);
        Timeouts {
            connect: minute,
            send: minute,
            read: minute,
        }
    }
}

pub(super) fn validate(id: Option<&str>, value: &Value) -> Result<ValidUpstream, ValidationError> {
    let _ = (id, value);
    todo!("validate helper")
}
