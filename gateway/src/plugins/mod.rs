//! Plugins: per-route request processing, in the spirit of pingora's
//! `ProxyHttp`. A plugin implements any of the four phases of one trait,
//! [`Plugin`]; the proxy runs a route's [`PluginChain`] at each phase and
//! knows nothing about individual plugins, so identity plugins, ACLs or
//! per-route mTLS plug in here without touching the proxy loop.
//!
//! Plugins are built from their validated, typed configuration
//! ([`shared::plugins`]: schema, configuration and checks of each plugin)
//! when the route table is built, never per request and never from JSON.
//! Each plugin module implements [`Build`] for its configuration type; the
//! registry below ([`build_one`]) gives each its place in a chain (higher
//! priority runs first, APISIX's numbers). A plugin added in `shared` does
//! not compile here until it has its line in that registry.

mod cert_header;
mod client_cert_auth;
mod error;
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
use shared::plugins::{PluginConfig, PluginConfigs};
use shared::validate::ValidRoute;

use crate::context::ConnInfo;
use crate::reply::ProxyBody;
use crate::tls::RouteCertRequests;

pub use error::{BuildError, PluginError};

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

/// How the gateway builds a plugin from its validated configuration
/// (implemented on the `shared::plugins` type, in the plugin's module).
trait Build {
    /// Higher runs first.
    const PRIORITY: i32;

    fn build(&self) -> Result<Box<dyn Plugin>, BuildError>;
}

/// The registry: every plugin of this build, with its place in a chain.
/// Authentication runs before authorisation (APISIX's auth plugins sit
/// around 2500, `consumer-restriction` at 2400), both before any rewrite.
fn build_one(config: &PluginConfig) -> Result<(i32, Box<dyn Plugin>), BuildError> {
    fn built<T: Build>(config: &T) -> Result<(i32, Box<dyn Plugin>), BuildError> {
        Ok((T::PRIORITY, config.build()?))
    }
    match config {
        PluginConfig::ClientCertAuth(config) => built(&**config),
        PluginConfig::MtlsAuth(config) => built(&**config),
        PluginConfig::MtlsAcl(config) => built(&**config),
        PluginConfig::ForwardClientCert(config) => built(&**config),
        PluginConfig::ProxyRewrite(config) => built(&**config),
    }
}

/// What the handshakes must ask for on behalf of the enabled routes that
/// verify client certificates themselves (`client-cert-auth`); see
/// [`crate::tls::RouteCertRequests`].
pub fn client_cert_requests(routes: &[Arc<ValidRoute>]) -> RouteCertRequests {
    let mut requests = RouteCertRequests::default();
    for route in routes.iter().filter(|route| route.enabled) {
        if let Some(auth) = route.plugins.client_cert_auth() {
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
                build_one(config).map_err(|source| PluginError {
                    plugin: config.name(),
                    source,
                })
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
    use serde_json::{json, Value};

    fn configs(name: &str, config: Value) -> PluginConfigs {
        PluginConfigs::validate(&BTreeMap::from([(name.to_owned(), config)])).unwrap()
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
    fn a_plugin_that_cannot_be_built_is_named() {
        let config = json!({"ca": [testing::Pki::named("Route CA").ca.pem]});
        let mut auth = shared::validate::ClientCertAuth::from_config(&config).unwrap();
        // Validation parses the PEM, not what webpki makes of it.
        auth.ca = vec![vec![0x30, 0x00].into()];
        let Err(err) = build_one(&PluginConfig::ClientCertAuth(Box::new(auth))) else {
            panic!("built a trust set from no anchor");
        };
        assert_eq!(err.kind(), "trust_set");
        assert!(
            err.to_string().starts_with("ca: CA certificate #0"),
            "{err}"
        );
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
