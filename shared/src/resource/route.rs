use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Metadata, Upstream};

/// A route (APISIX `routes`): what to match, which plugins to run, where to send.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Route {
    #[serde(flatten)]
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uris: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub priority: i64,
    /// Proxy WebSocket upgrades (HTTP/1.1) to the upstream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_websocket: bool,
    /// Plugin name -> plugin configuration (validated by the plugin's schema).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::optional_id"
    )]
    pub upstream_id: Option<String>,
    #[serde(default = "enabled")]
    pub status: u8,
}

fn enabled() -> u8 {
    1
}
