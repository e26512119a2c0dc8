//! Plugins: per-route request processing, in the spirit of pingora's
//! `ProxyHttp`. A plugin implements any of the four phases of one trait,
//! [`Plugin`]; the proxy runs a route's [`PluginChain`] at each phase and
//! knows nothing about individual plugins, so identity plugins, ACLs or
//! per-route mTLS plug in here without touching the proxy loop.
//!
//! Plugins are built from their (already schema-validated) JSON
//! configuration when the route table is built, never per request. The
//! registry below maps each name to its constructor and its place in a
//! chain (higher priority runs first, APISIX's numbers).

mod cert_header;
mod client_cert_auth;
mod forward_client_cert;
mod identity;
mod mtls_acl;
mod mtls_auth;
mod proxy_rewrite;
mod vars;

#[cfg(test)]
mod testing;

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use http::{request, response, HeaderValue, Response, StatusCode};
use serde_json::Value;
use shared::validate::{ClientCertAuth, PluginConfigs, ValidRoute, CLIENT_CERT_AUTH};
use thiserror::Error;

use crate::context::ConnInfo;
use crate::reply::ProxyBody;
use crate::tls::RouteCertRequests;

/// What a phase decides: go on, or answer the client with this response
/// (the rest of the chain and the upstream are skipped).
pub type Flow = ControlFlow<Response<ProxyBody>>;

/// One plugin instance, configured for one route.
pub trait Plugin: Send + Sync {
    /// The name the plugin is configured under.
    fn name(&self) -> &'static str;

    /// On the client's request, after routing and before anything is sent
    /// upstream: authenticate, authorise, refuse.
    fn request_filter(&self, _ctx: &mut RequestCtx<'_>, _req: &mut request::Parts) -> Flow {
        ControlFlow::Continue(())
    }

    /// On the request about to go upstream, once per attempt: hop-by-hop
    /// headers are gone; `Host`, `X-Forwarded-*` and the node's URI are set.
    fn upstream_request_filter(&self, _ctx: &RequestCtx<'_>, _req: &mut request::Parts) -> Flow {
        ControlFlow::Continue(())
    }

    /// On the upstream's response head, before the client sees it.
    fn response_filter(&self, _ctx: &RequestCtx<'_>, _resp: &mut response::Parts) {}

    /// Once per request that reached this route, however it ended (served,
    /// refused by a plugin, failed upstream), once the response head is
    /// ready: where logger plugins plug in. Must not block.
    fn log(&self, _ctx: &LogCtx<'_>) {}
}

/// What the `log` phase knows: how the request ended.
pub struct LogCtx<'a> {
    pub conn: &'a ConnInfo,
    pub route_id: &'a str,
    pub status: StatusCode,
    pub request_id: Option<&'a HeaderValue>,
    /// From the request's arrival to its response head.
    pub duration: Duration,
    /// `None` when no upstream answered.
    pub upstream_status: Option<StatusCode>,
}

/// What every phase knows about the request being served.
pub struct RequestCtx<'a> {
    pub conn: &'a ConnInfo,
    pub route_id: &'a str,
    /// The host the request named, normalised (nginx `$host`).
    pub host: Option<&'a str>,
    /// The decoded, normalised path the route matched (nginx `$uri`).
    pub uri: &'a str,
    /// The path and query exactly as the client sent them (`$request_uri`).
    pub request_uri: &'a str,
    /// Typed per-request state plugins hand to later plugins (an identity
    /// found by an authentication plugin, read by an ACL).
    pub extensions: http::Extensions,
}

impl RequestCtx<'_> {
    /// The client's query string, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.request_uri.split_once('?').map(|(_, query)| query)
    }
}

/// Why a route's plugins could not be built.
#[derive(Debug, Error)]
pub enum PluginError {
    #[error("plugin {0:?} is not available in this build")]
    Unknown(String),
    #[error("plugin {plugin:?}: {reason}")]
    Config {
        plugin: &'static str,
        reason: String,
    },
}

/// A plugin this build knows.
struct Registration {
    name: &'static str,
    /// Higher runs first.
    priority: i32,
    build: fn(&Value) -> Result<Box<dyn Plugin>, String>,
}

/// Every plugin of this build. Keep in step with `shared::schema::PLUGINS`.
/// Authentication runs before authorisation (APISIX's auth plugins sit
/// around 2500, `consumer-restriction` at 2400), both before any rewrite.
const REGISTRY: &[Registration] = &[
    Registration {
        name: client_cert_auth::NAME,
        priority: 2540,
        build: client_cert_auth::build,
    },
    Registration {
        name: mtls_auth::NAME,
        priority: 2530,
        build: mtls_auth::build,
    },
    Registration {
        name: mtls_acl::NAME,
        priority: 2420,
        build: mtls_acl::build,
    },
    Registration {
        name: forward_client_cert::NAME,
        priority: 2410,
        build: forward_client_cert::build,
    },
    Registration {
        name: proxy_rewrite::NAME,
        priority: 1008,
        build: proxy_rewrite::build,
    },
];

/// What the handshakes must ask for on behalf of the enabled routes that
/// verify client certificates themselves (`client-cert-auth`); see
/// [`crate::tls::RouteCertRequests`]. A configuration that does not parse
/// asks for nothing: its route answers 503 anyway.
pub fn client_cert_requests(routes: &[Arc<ValidRoute>]) -> RouteCertRequests {
    let mut requests = RouteCertRequests::default();
    for route in routes.iter().filter(|route| route.enabled) {
        let Some(config) = route.plugins.get(CLIENT_CERT_AUTH) else {
            continue;
        };
        let auth = config
            .value()
            .ok()
            .and_then(|config| ClientCertAuth::from_config(&config).ok());
        if let Some(auth) = auth {
            requests.add(&route.hosts, auth.ca_names());
        }
    }
    requests
}

/// A route's plugins, in the order they run.
#[derive(Default)]
pub struct PluginChain {
    plugins: Box<[Box<dyn Plugin>]>,
    /// Whether `forward-client-cert` decides which certificate headers the
    /// client sent go on (see [`Self::decides_client_cert_headers`]).
    forwards_client_cert: bool,
}

impl PluginChain {
    /// Builds every configured plugin, ordered by priority.
    pub fn build(configs: &PluginConfigs) -> Result<PluginChain, PluginError> {
        let mut built = configs
            .iter()
            .map(|config| {
                let registration = REGISTRY
                    .iter()
                    .find(|r| r.name == config.name())
                    .ok_or_else(|| PluginError::Unknown(config.name().to_owned()))?;
                let plugin = config
                    .value()
                    .map_err(|err| err.to_string())
                    .and_then(|value| (registration.build)(&value))
                    .map_err(|reason| PluginError::Config {
                        plugin: registration.name,
                        reason,
                    })?;
                Ok((registration.priority, plugin))
            })
            .collect::<Result<Vec<_>, PluginError>>()?;
        built.sort_by_key(|(priority, _)| std::cmp::Reverse(*priority));
        let forwards_client_cert = built
            .iter()
            .any(|(_, plugin)| plugin.name() == forward_client_cert::NAME);
        // Every route keeps its chain: no room kept for more plugins.
        Ok(PluginChain {
            plugins: built.into_iter().map(|(_, plugin)| plugin).collect(),
            forwards_client_cert,
        })
    }

    /// Whether a plugin of this chain decides what becomes of the
    /// certificate headers the client sent (`X-Forwarded-Client-Cert`,
    /// `Client-Cert`, `Client-Cert-Chain`); otherwise the proxy removes
    /// them. Known when the route is built.
    pub(crate) fn decides_client_cert_headers(&self) -> bool {
        self.forwards_client_cert
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    pub(crate) fn request_filter(
        &self,
        ctx: &mut RequestCtx<'_>,
        req: &mut request::Parts,
    ) -> Flow {
        self.plugins
            .iter()
            .try_for_each(|plugin| plugin.request_filter(ctx, req))
    }

    pub(crate) fn upstream_request_filter(
        &self,
        ctx: &RequestCtx<'_>,
        req: &mut request::Parts,
    ) -> Flow {
        self.plugins
            .iter()
            .try_for_each(|plugin| plugin.upstream_request_filter(ctx, req))
    }

    pub(crate) fn response_filter(&self, ctx: &RequestCtx<'_>, resp: &mut response::Parts) {
        for plugin in &self.plugins {
            plugin.response_filter(ctx, resp);
        }
    }

    pub(crate) fn log(&self, ctx: &LogCtx<'_>) {
        for plugin in &self.plugins {
            plugin.log(ctx);
        }
    }
}

impl fmt::Debug for PluginChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.plugins.iter().map(|p| p.name()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use serde_json::json;

    fn configs(name: &str, config: Value) -> PluginConfigs {
        PluginConfigs::new(&BTreeMap::from([(name.to_owned(), config)]))
    }

    #[test]
    fn only_forward_client_cert_decides_the_client_cert_headers() {
        let forwards = configs("forward-client-cert", json!({"mode": "forward_only"}));
        assert!(PluginChain::build(&forwards)
            .unwrap()
            .decides_client_cert_headers());
        let rewrites = configs("proxy-rewrite", json!({"uri": "/x"}));
        assert!(!PluginChain::build(&rewrites)
            .unwrap()
            .decides_client_cert_headers());
    }

    #[test]
    fn every_plugin_the_schema_accepts_is_registered() {
        for name in shared::schema::PLUGINS {
            assert!(
                REGISTRY.iter().any(|r| r.name == *name),
                "{name} has a schema but no implementation"
            );
        }
    }

    #[test]
    fn unknown_and_misconfigured_plugins_are_named() {
        let unknown = configs("key-auth", json!({}));
        let err = PluginChain::build(&unknown).unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugin \"key-auth\" is not available in this build"
        );

        let bad = configs("proxy-rewrite", json!({"method": "GET /"}));
        let err = PluginChain::build(&bad).unwrap_err().to_string();
        assert!(err.starts_with("plugin \"proxy-rewrite\": "), "{err}");
        assert!(err.contains("method"), "{err}");
    }

    #[test]
    fn routes_with_client_cert_auth_request_certificates_on_their_hosts() {
        use shared::resource::Kind;
        use shared::validate::{validate, HostPattern, Valid};

        let pki = testing::Pki::named("Route CA");
        let route = |id: &str, body: Value| match validate(Kind::Routes, id, &body) {
            Ok(Valid::Route(route)) => route,
            other => panic!("{other:?}"),
        };
        let upstream = json!({"nodes": {"127.0.0.1:1": 1}});
        let auth = json!({"client-cert-auth": {"ca": [pki.ca.pem]}});
        let routes = [
            route(
                "on",
                json!({"uri": "/a", "host": "a.test", "plugins": auth, "upstream": upstream}),
            ),
            route(
                "off",
                json!({"uri": "/b", "host": "b.test", "plugins": auth,
                                "upstream": upstream, "status": 0}),
            ),
            route(
                "plain",
                json!({"uri": "/c", "host": "c.test", "upstream": upstream}),
            ),
        ];
        let requests = client_cert_requests(&routes);
        let names = |sni: &str| requests.names_for(&[HostPattern::parse(sni).unwrap()]);
        let (_, ca) = x509_parser::parse_x509_certificate(pki.ca.der.as_ref()).unwrap();
        assert_eq!(names("a.test"), Some(vec![ca.subject().as_raw().to_vec()]));
        assert_eq!(names("b.test"), None, "a disabled route asks for nothing");
        assert_eq!(names("c.test"), None);
    }

    #[test]
    fn builds_configured_plugins() {
        let chain = PluginChain::build(&configs("proxy-rewrite", json!({"uri": "/x"}))).unwrap();
        assert_eq!(format!("{chain:?}"), r#"["proxy-rewrite"]"#);
        assert!(PluginChain::build(&PluginConfigs::default())
            .unwrap()
            .is_empty());
    }
}
