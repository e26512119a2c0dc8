use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::{HostPattern, UriPattern, ValidUpstream, ValidationError};
use crate::resource::Route;

/// A validated route. Plugin configurations have passed their plugin's schema.
#[derive(Debug)]
pub struct ValidRoute {
    pub id: String,
    pub spec: Route,
    pub enabled: bool,
    /// At least one.
    pub uris: Vec<UriPattern>,
    /// Empty: any host.
    pub hosts: Vec<HostPattern>,
    /// Uppercase; empty: any method.
    pub methods: Vec<String>,
    pub priority: i64,
    pub upstream: UpstreamRef,
    pub plugins: BTreeMap<String, Value>,
}

/// Where a route sends traffic.
#[derive(Debug, Clone)]
pub enum UpstreamRef {
    Inline(Arc<ValidUpstream>),
    /// Resolved against the stored upstreams when the snapshot is built.
    Id(String),
}

pub(super) fn validate(id: &str, value: &Value) -> Result<ValidRoute, ValidationError> {
    let _ = (id, value);
    todo!("validate helper")
}
