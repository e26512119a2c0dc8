//! Where a route sends traffic: an upstream built once per configuration
//! (node addresses, weighted round-robin, `pass_host` policy, timeouts, TLS
//! profile), the pooled client of its TLS profile, and the bodies streamed
//! through it.
//!
//! Module map:
//! * `balancer`: smooth weighted round-robin;
//! * `profile`: an upstream's `tls` resolved into a TLS profile (client
//!   identity, trust anchors, server name) and its rustls `ClientConfig`;
//! * `pools`: one client per profile, kept across configuration changes;
//! * `client`: the hyper client of one profile, with its timeouts;
//! * `body`: request and response bodies in flight.

mod balancer;
mod body;
mod client;
mod pools;
mod profile;

use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use rustls::crypto::CryptoProvider;
use shared::resource::{PassHost, Scheme as UpstreamScheme};
use shared::validate::{Timeouts, UpstreamNode, ValidUpstream};
use tokio::sync::oneshot;

use balancer::Balancer;
pub(crate) use body::{AttemptBody, RequestBody, ResponseBody};
pub(crate) use client::SendError;
use client::UpstreamClient;
pub use pools::UpstreamPools;
pub(crate) use profile::SslObjects;
use profile::TlsProfile;

use crate::build_error::BuildError;
use crate::json_text::JsonText;

/// What upstreams are built with, besides their own spec.
pub(crate) struct BuildContext<'a> {
    /// The SSL objects `tls.client_cert_id` and `tls.ca_id` may name.
    pub(crate) ssls: &'a SslObjects,
    pub(crate) pools: &'a UpstreamPools,
    pub(crate) provider: Arc<CryptoProvider>,
}

/// A built upstream, shared by every route that names it.
pub(crate) struct UpstreamTarget {
    /// `upstream 1` or `inline upstream of route 7`, for logs.
    pub(crate) name: Arc<str>,
    scheme: Scheme,
    host_policy: HostPolicy,
    pub(crate) timeouts: Timeouts,
    /// Extra attempts, on other nodes, after a connect failure.
    pub(crate) retries: u32,
    /// Boxed: every route with an inline upstream keeps its own, with no
    /// room for more.
    nodes: Box<[Node]>,
    balancer: Balancer,
    /// The client of this upstream's TLS profile, or why there is none
    /// (every request then answers 502 with that reason logged).
    client: Result<Arc<UpstreamClient>, Arc<BuildError>>,
}

/// Which `Host` the upstream sees (`pass_host`).
enum HostPolicy {
    /// The client's own.
    Pass,
    /// The chosen node's `host[:port]`.
    Node,
    /// `upstream_host`.
    Rewrite(HeaderValue),
}

/// One upstream node, its address pre-parsed.
pub(crate) struct Node {
    authority: Authority,
    /// `host`, plus `:port` unless the scheme's default.
    host_header: HeaderValue,
    /// The address as the access log writes it.
    log_address: JsonText,
}

impl UpstreamTarget {
    /// Builds `spec`; fails, naming the field, when a node address or
    /// `upstream_host` cannot be used. A TLS profile that cannot be built
    /// (a missing `client_cert_id`, ...) does not fail the build: the target
    /// answers 502 (see [`UpstreamTarget::send`]).
    pub(crate) fn build(
        name: String,
        spec: &ValidUpstream,
        ctx: &BuildContext<'_>,
    ) -> Result<UpstreamTarget, BuildError> {
        let scheme = match spec.scheme {
            UpstreamScheme::Http => Scheme::HTTP,
            UpstreamScheme::Https => Scheme::HTTPS,
        };
        let nodes = spec
            .nodes
            .iter()
            .map(|node| Node::new(node, &scheme))
            .collect::<Result<Box<[_]>, _>>()?;
        let weights: Vec<u32> = spec.nodes.iter().map(|node| node.weight).collect();
        let client = client_for(spec, ctx).map_err(|reason| {
            tracing::warn!(upstream = %name, %reason, "upstream TLS unavailable; its requests answer 502 until fixed");
            Arc::new(reason)
        });
        Ok(UpstreamTarget {
            client,
            name: name.into(),
            host_policy: HostPolicy::new(spec)?,
            timeouts: spec.timeouts,
            retries: spec.retries,
            balancer: Balancer::new(&weights),
            nodes,
            scheme,
        })
    }

    /// The node for the next attempt by weighted round-robin, passing over
    /// the nodes in `failed` while another node remains. `None` when the
    /// upstream has no node.
    pub(crate) fn pick(&self, failed: &[usize]) -> Option<usize> {
        let fresh = (0..self.balancer.cycle_len())
            .filter_map(|_| self.balancer.pick())
            .find(|index| !failed.contains(index));
        fresh.or_else(|| self.balancer.pick())
    }

    pub(crate) fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    /// Sends `req` through this upstream's pooled client (see
    /// [`UpstreamClient::send`] for `sent`).
    pub(crate) async fn send(
        &self,
        req: Request<AttemptBody>,
        sent: Option<oneshot::Receiver<()>>,
    ) -> Result<Response<Incoming>, SendError> {
        match &self.client {
            Ok(client) => client.send(req, &self.timeouts, sent).await,
            Err(reason) => Err(SendError::TlsUnavailable(Arc::clone(reason))),
        }
    }

    /// Why this upstream has no TLS client (its requests answer 502).
    pub(crate) fn tls_error(&self) -> Option<&BuildError> {
        self.client.as_ref().err().map(|error| &**error)
    }

    /// The absolute URI of `path_and_query` on `node`.
    pub(crate) fn uri(
        &self,
        node: &Node,
        path_and_query: PathAndQuery,
    ) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(node.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    /// The `Host` header for a request to `node`, given the client's.
    pub(crate) fn host_header(
        &self,
        node: &Node,
        client_host: Option<&HeaderValue>,
    ) -> Option<HeaderValue> {
        match &self.host_policy {
            HostPolicy::Pass => client_host
                .cloned()
                .or_else(|| Some(node.host_header.clone())),
            HostPolicy::Node => Some(node.host_header.clone()),
            HostPolicy::Rewrite(host) => Some(host.clone()),
        }
    }
}

/// The pooled client of `spec`'s TLS profile (the shared plain client for
/// `http`).
fn client_for(
    spec: &ValidUpstream,
    ctx: &BuildContext<'_>,
) -> Result<Arc<UpstreamClient>, BuildError> {
    let Some(policy) = &spec.tls else {
        return Ok(ctx.pools.plain());
    };
    TlsProfile::resolve(policy, ctx.ssls)
        .and_then(|profile| ctx.pools.tls(&profile, &ctx.provider))
        .map_err(BuildError::UpstreamTls)
}

impl HostPolicy {
    fn new(spec: &ValidUpstream) -> Result<HostPolicy, BuildError> {
        Ok(match spec.pass_host {
            PassHost::Pass => HostPolicy::Pass,
            PassHost::Node => HostPolicy::Node,
            PassHost::Rewrite => {
                let host = spec
                    .upstream_host
                    .as_deref()
                    .ok_or(BuildError::UpstreamHostMissing)?;
                let value = HeaderValue::from_str(host).map_err(|_| BuildError::UpstreamHost {
                    host: host.to_owned(),
                })?;
                HostPolicy::Rewrite(value)
            }
        })
    }
}

impl Node {
    fn new(node: &UpstreamNode, scheme: &Scheme) -> Result<Node, BuildError> {
        let host = if node.host.contains(':') && !node.host.starts_with('[') {
            format!("[{}]", node.host)
        } else {
            node.host.clone()
        };
        let invalid = || BuildError::NodeAddress {
            address: format!("{host}:{}", node.port),
        };
        let authority =
            Authority::try_from(format!("{host}:{}", node.port)).map_err(|_| invalid())?;
        let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
        let host_header = if node.port == default_port {
            HeaderValue::from_str(&host)
        } else {
            HeaderValue::from_str(authority.as_str())
        }
        .map_err(|_| invalid())?;
        Ok(Node {
            log_address: JsonText::new(authority.as_str()),
            authority,
            host_header,
        })
    }

    /// `host:port`, for logs and metrics.
    pub(crate) fn address(&self) -> &str {
        self.authority.as_str()
    }

    /// `host:port` as a JSON string.
    pub(crate) fn log_address(&self) -> &JsonText {
        &self.log_address
    }
}

#[cfg(test)]
mod tls_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        nodes: &[(&str, u16, u32)],
        scheme: UpstreamScheme,
        pass_host: PassHost,
        upstream_host: Option<&str>,
    ) -> ValidUpstream {
        ValidUpstream {
            id: None,
            nodes: nodes
                .iter()
                .map(|&(host, port, weight)| UpstreamNode {
                    host: host.to_owned(),
                    port,
                    weight,
                })
                .collect(),
            scheme,
            pass_host,
            upstream_host: upstream_host.map(str::to_owned),
            timeouts: Timeouts::default(),
            retries: 1,
            tls: None,
        }
    }

    fn build(spec: &ValidUpstream) -> Result<UpstreamTarget, BuildError> {
        let ssls = SslObjects::new();
        let pools = UpstreamPools::default();
        let ctx = BuildContext {
            ssls: &ssls,
            pools: &pools,
            provider: crate::tls::provider(),
        };
        UpstreamTarget::build("u".into(), spec, &ctx)
    }

    #[test]
    fn host_header_follows_pass_host() {
        let client = HeaderValue::from_static("api.example.com:9443");
        let nodes = [("10.0.0.1", 8080, 1)];
        let pass = build(&spec(&nodes, UpstreamScheme::Http, PassHost::Pass, None)).unwrap();
        let node = pass.node(0);
        assert_eq!(
            pass.host_header(node, Some(&client)).unwrap(),
            "api.example.com:9443"
        );
        assert_eq!(pass.host_header(node, None).unwrap(), "10.0.0.1:8080");

        let by_node = build(&spec(&nodes, UpstreamScheme::Http, PassHost::Node, None)).unwrap();
        assert_eq!(
            by_node.host_header(by_node.node(0), Some(&client)).unwrap(),
            "10.0.0.1:8080"
        );

        let rewrite = build(&spec(
            &nodes,
            UpstreamScheme::Http,
            PassHost::Rewrite,
            Some("internal"),
        ))
        .unwrap();
        assert_eq!(
            rewrite.host_header(rewrite.node(0), Some(&client)).unwrap(),
            "internal"
        );
    }

    #[test]
    fn default_ports_are_left_out_of_the_node_host() {
        let https = build(&spec(
            &[("backend.internal", 443, 1), ("::1", 8443, 1)],
            UpstreamScheme::Https,
            PassHost::Node,
            None,
        ))
        .unwrap();
        assert_eq!(
            https.host_header(https.node(0), None).unwrap(),
            "backend.internal"
        );
        assert_eq!(
            https.host_header(https.node(1), None).unwrap(),
            "[::1]:8443"
        );
        let uri = https
            .uri(https.node(1), PathAndQuery::from_static("/a?b=c"))
            .unwrap();
        assert_eq!(uri, "https://[::1]:8443/a?b=c");
    }

    #[test]
    fn unusable_settings_are_named() {
        let missing = build(&spec(
            &[("a", 80, 1)],
            UpstreamScheme::Http,
            PassHost::Rewrite,
            None,
        ));
        assert_eq!(missing.err().unwrap(), BuildError::UpstreamHostMissing);
        let bad_node = build(&spec(
            &[("a b", 80, 1)],
            UpstreamScheme::Http,
            PassHost::Pass,
            None,
        ));
        assert!(bad_node.err().unwrap().to_string().contains("a b:80"));
    }

    #[test]
    fn retries_avoid_failed_nodes() {
        let target = build(&spec(
            &[("a", 80, 5), ("b", 80, 1), ("c", 80, 1)],
            UpstreamScheme::Http,
            PassHost::Pass,
            None,
        ))
        .unwrap();
        for _ in 0..20 {
            let first = target.pick(&[]).unwrap();
            let second = target.pick(&[first]).unwrap();
            assert_ne!(first, second);
            let third = target.pick(&[first, second]).unwrap();
            assert!(![first, second].contains(&third));
        }
        assert!(
            target.pick(&[0, 1, 2]).is_some(),
            "all failed: still try one"
        );
    }
}
