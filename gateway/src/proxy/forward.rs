//! Sends a routed request to its upstream: picks a node, builds that node's
//! request, lets the plugins adjust it, and tries another node after a
//! connect failure while `retries` allow and the body is still unread.

use std::ops::ControlFlow;
use std::time::Instant;

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Version};
use hyper::body::Incoming;

use super::error::ProxyError;
use super::exchange::Exchange;
use super::headers::prepare_upstream_headers;
use crate::plugins::RequestCtx;
use crate::reply::ProxyBody;
use crate::router::Pipeline;
use crate::upstream::{Node, RequestBody, UpstreamTarget};

/// The client's request as every attempt starts from it: forwarding headers
/// set, the client's certificate headers gone unless a plugin decided on
/// them (hop-by-hop headers went before the plugins ran).
pub(super) struct UpstreamRequest {
    pub(super) method: Method,
    pub(super) path_and_query: PathAndQuery,
    pub(super) headers: HeaderMap,
    /// The host the client asked for, as it sent it (`pass_host: pass`).
    pub(super) client_host: Option<HeaderValue>,
}

/// How the exchange ended.
pub(super) enum Outcome {
    Upstream(Response<Incoming>),
    /// A plugin answered instead of the upstream.
    Plugin(Response<ProxyBody>),
}

pub(super) async fn forward<'s>(
    pipeline: &'s Pipeline,
    ctx: &RequestCtx<'_>,
    mut request: UpstreamRequest,
    body: Incoming,
    exchange: &mut Exchange<'s>,
) -> Result<Outcome, ProxyError> {
    let upstream = &pipeline.upstream;
    let body = RequestBody::new(body);
    let mut failed = Vec::new();
    loop {
        let index = upstream.pick(&failed).ok_or_else(|| ProxyError::NoNode {
            route: ctx.route_id.to_owned(),
            upstream: upstream.name.to_string(),
        })?;
        let node = upstream.node(index);
        exchange.node = Some(node);
        let last_attempt = failed.len() >= upstream.retries as usize;
        let mut parts = request
            .for_node(upstream, node, last_attempt)
            .map_err(|source| ProxyError::UpstreamRequest {
                route: ctx.route_id.to_owned(),
                upstream: upstream.name.to_string(),
                source,
            })?;
        if let ControlFlow::Break(response) =
            pipeline.plugins.upstream_request_filter(ctx, &mut parts)
        {
            return Ok(Outcome::Plugin(response));
        }
        let (attempt_body, sent) = body.attempt();
        let sending = upstream.send(Request::from_parts(parts, attempt_body), sent);
        let sent_at = Instant::now();
        let error = match sending.await {
            Ok(response) => {
                exchange.upstream = Some((response.status(), sent_at.elapsed()));
                return Ok(Outcome::Upstream(response));
            }
            Err(error) => error,
        };
        let retry =
            error.is_connect() && failed.len() < upstream.retries as usize && body.is_untouched();
        if !retry {
            return Err(ProxyError::Upstream {
                route: ctx.route_id.to_owned(),
                upstream: upstream.name.to_string(),
                node: node.address().to_owned(),
                source: error,
            });
        }
        tracing::warn!(
            route = ctx.route_id,
            upstream = %upstream.name,
            node = node.address(),
            %error,
            "upstream node failed; trying another"
        );
        failed.push(index);
    }
}

impl UpstreamRequest {
    /// Takes the client's request head (after the plugins' `request_filter`)
    /// and prepares its headers for the upstream.
    pub(super) fn new(
        mut parts: Parts,
        ctx: &RequestCtx<'_>,
        client_host: Option<HeaderValue>,
    ) -> Self {
        prepare_upstream_headers(&mut parts.headers, ctx.conn, client_host.as_ref());
        UpstreamRequest {
            method: parts.method,
            path_and_query: parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            headers: parts.headers,
            client_host,
        }
    }

    /// The request for one attempt on `node`: HTTP/1.1, absolute URI, `Host`
    /// as the upstream's `pass_host` says. The `last` attempt takes the
    /// headers instead of copying them (no retry will need them).
    fn for_node(
        &mut self,
        upstream: &UpstreamTarget,
        node: &Node,
        last: bool,
    ) -> Result<Parts, http::Error> {
        let uri = upstream.uri(node, self.path_and_query.clone())?;
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = self.method.clone();
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        parts.headers = if last {
            std::mem::take(&mut self.headers)
        } else {
            self.headers.clone()
        };
        if let Some(host) = upstream.host_header(node, self.client_host.as_ref()) {
            parts.headers.insert(http::header::HOST, host);
        }
        Ok(parts)
    }
}
