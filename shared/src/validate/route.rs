//! Routes: URI and host patterns, methods, plugins and where to send traffic.

use std::sync::Arc;

use serde_json::Value;

use super::{
    deserialize, one_or_many, upstream, HostPattern, PluginConfigs, UriPattern, ValidUpstream,
    ValidationError,
};
use crate::error::{exactly_one, OneOf};
use crate::resource::Route;

/// A validated route. Plugin configurations are typed and checked
/// ([`crate::plugins`]).
///
/// Only what the gateway and the admin API read after validation is kept:
/// a gateway may hold 100,000 routes, and the stored JSON itself is kept
/// beside this (`crate::state::Stored::raw`).
#[derive(Debug)]
pub struct ValidRoute {
    pub id: String,
    pub enabled: bool,
    /// At least one.
    pub uris: Vec<UriPattern>,
    /// Empty: any host.
    pub hosts: Vec<HostPattern>,
    /// Uppercase; empty: any method.
    pub methods: Vec<String>,
    pub priority: i64,
    /// HTTP/1.1 WebSocket upgrades are proxied (APISIX `enable_websocket`).
    pub enable_websocket: bool,
    pub upstream: UpstreamRef,
    pub plugins: PluginConfigs,
}

/// Where a route sends traffic.
#[derive(Debug, Clone)]
pub enum UpstreamRef {
    Inline(Arc<ValidUpstream>),
    /// Resolved against the stored upstreams when the snapshot is built.
    Id(String),
}

pub(super) fn validate(id: &str, value: &Value) -> Result<ValidRoute, ValidationError> {
    let spec: Route = deserialize(value, Some(id))?;
    let mut uris = uris(&spec)?;
    let mut hosts = hosts(&spec)?;
    let upstream = upstream_ref(&spec, value)?;
    let plugins = PluginConfigs::from_checked(&spec.plugins)?;
    let mut methods: Vec<String> = spec
        .methods
        .iter()
        .flatten()
        .map(|m| m.to_ascii_uppercase())
        .collect();
    methods.dedup();
    // A gateway may hold 100,000 routes: no room kept for more.
    uris.shrink_to_fit();
    hosts.shrink_to_fit();
    methods.shrink_to_fit();
    Ok(ValidRoute {
        id: id.to_owned(),
        enabled: spec.status == 1,
        uris,
        hosts,
        methods,
        priority: spec.priority,
        enable_websocket: spec.enable_websocket,
        upstream,
        plugins,
    })
}

/// Exactly one of `uri` / `uris`.
fn uris(spec: &Route) -> Result<Vec<UriPattern>, ValidationError> {
    one_or_many(
        ("uri", spec.uri.as_deref()),
        ("uris", spec.uris.as_deref()),
        UriPattern::parse,
    )?
    .ok_or_else(|| ValidationError::field("uri", "one of `uri` or `uris` is required"))
}

/// At most one of `host` / `hosts`; none means any host.
fn hosts(spec: &Route) -> Result<Vec<HostPattern>, ValidationError> {
    let hosts = one_or_many(
        ("host", spec.host.as_deref()),
        ("hosts", spec.hosts.as_deref()),
        HostPattern::parse,
    )?;
    Ok(hosts.unwrap_or_default())
}

/// Exactly one of `upstream` (validated here) / `upstream_id` (checked for
/// existence by the admin API, resolved by the gateway).
fn upstream_ref(spec: &Route, value: &Value) -> Result<UpstreamRef, ValidationError> {
    let given = exactly_one(
        ("upstream", value.get("upstream")),
        ("upstream_id", spec.upstream_id.as_ref()),
        "upstream",
    )?;
    match given {
        OneOf::First(inline) => upstream::validate(None, inline)
            .map(|valid| UpstreamRef::Inline(Arc::new(valid)))
            .map_err(|e| e.within("upstream")),
        OneOf::Second(upstream_id) => Ok(UpstreamRef::Id(upstream_id.clone())),
    }
}
