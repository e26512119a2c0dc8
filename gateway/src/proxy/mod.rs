//! Serves one client request, in phases:
//!
//! 0. hop-by-hop headers removed (before any plugin, so `Connection`
//!    cannot remove what a plugin sets), and a path with dot-segments
//!    refused (400: the upstream gets the path as sent, so it must not be
//!    readable as another one; see [`crate::path::normalize_path`]);
//! 1. the client-certificate gate (`skip_mtls_uri_regex`: 400 without a
//!    verified certificate on a path no regex exempts);
//! 2. Host ≠ SNI (421 when the connection's SSL object verifies client
//!    certificates and `Host` belongs to another SSL object);
//! 3. routing ([`crate::router`]; 404 without a match);
//! 4. the route's plugins ([`crate::plugins`]);
//! 5. the upstream ([`crate::upstream`]): 502 when it cannot be reached,
//!    504 when it is too slow, each with a JSON `{"error_msg": ...}` body;
//!    on a route with `enable_websocket`, an HTTP/1.1 WebSocket upgrade
//!    becomes a spliced connection once the upstream switches protocols
//!    ([`websocket`]).
//!
//! Bodies stream in both directions; nothing is buffered whole. The
//! configuration is read from the current snapshot per request, so a
//! keep-alive connection sees route changes at once.

mod error;
mod exchange;
mod forward;
mod gate;
mod headers;
mod websocket;

use std::ops::ControlFlow;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::HOST;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Version};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use shared::validate::normalize_host;

use error::ProxyError;
use exchange::Exchange;
use forward::{forward, Outcome, UpstreamRequest};
use websocket::ClientUpgrade;

use crate::context::ConnInfo;
use crate::path::normalize_path;
use crate::plugins::RequestCtx;
use crate::reply::ProxyBody;
use crate::router::Pipeline;
use crate::snapshot::Snapshot;
use crate::upstream::ResponseBody;

/// The request handler shared by every client connection; share it with an
/// `Arc`. The upstream connection pools live in the snapshot's route table
/// (one per upstream TLS profile, carried across configuration changes).
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
}

impl Proxy {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>) -> Proxy {
        Proxy { snapshot }
    }

    /// Serves one request from a client connection (HTTP/1.1 or HTTP/2).
    /// Every request leaves here, whatever ended it: the `log` phase, the
    /// metrics and the access log see each once.
    pub async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<ProxyBody> {
        let snapshot = self.snapshot.load_full();
        let mut exchange = Exchange::start(&req);
        let response = self
            .serve(&snapshot, req, conn, &mut exchange)
            .await
            .unwrap_or_else(ProxyError::into_response);
        exchange.finish(conn, &response);
        response
    }

    async fn serve<'s>(
        &self,
        snapshot: &'s Snapshot,
        req: Request<Incoming>,
        conn: &ConnInfo,
        exchange: &mut Exchange<'s>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let asks_websocket = headers::strip_request_hop_by_hop(&mut parts.headers);
        if exchange.wants_request_id() {
            exchange.request_id = Some(crate::access_log::ensure_request_id(&mut parts.headers));
        }
        let target = Target::of(&parts)?;
        gate::refuse_stale_policy(conn, &snapshot.tls)?;
        gate::require_client_cert(conn, &target.path)?;
        gate::refuse_misdirected(conn, target.host.as_deref(), &snapshot.tls)?;
        let route = snapshot
            .routes
            .find(target.host.as_deref(), &target.path, &parts.method)
            .ok_or(ProxyError::RouteNotFound)?;
        exchange.route = Some(route);
        exchange.matched_host = route.metrics.matched_host(target.host.as_deref());
        let pipeline = route
            .pipeline()
            .map_err(|reason| ProxyError::RouteUnavailable {
                route: route.id.clone(),
                reason: reason.to_string(),
            })?;
        let mut ctx = RequestCtx {
            conn,
            route_id: &route.id,
            host: target.host.as_deref(),
            uri: &target.path,
            request_uri: target.request_uri.as_str(),
            extensions: http::Extensions::new(),
        };
        if let ControlFlow::Break(response) = pipeline.plugins.request_filter(&mut ctx, &mut parts)
        {
            return Ok(response);
        }
        // Plain requests stop at the first test.
        let upgrade = if asks_websocket && route.enable_websocket {
            ClientUpgrade::take(&mut parts)
        } else {
            None
        };
        if !pipeline.plugins.decides_client_cert_headers() {
            headers::remove_client_cert_headers(&mut parts.headers);
        }
        let request = UpstreamRequest::new(parts, &ctx, target.host_header.clone());
        let outcome = forward(pipeline, &ctx, request, body, exchange).await?;
        Ok(match outcome {
            Outcome::Upstream(response) => relay(response, upgrade, pipeline, &ctx),
            Outcome::Plugin(response) => response,
        })
    }
}

/// The upstream's response on its way to the client; a `101` answering
/// `upgrade` goes with an empty body, its connection spliced to the client's.
fn relay(
    mut response: Response<Incoming>,
    upgrade: Option<ClientUpgrade>,
    pipeline: &Pipeline,
    ctx: &RequestCtx<'_>,
) -> Response<ProxyBody> {
    let switched = upgrade.is_some_and(|upgrade| {
        upgrade.splice_if_switched(&mut response, ctx.route_id, ctx.conn.hold.clone())
    });
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    pipeline.plugins.response_filter(ctx, &mut parts);
    if switched {
        websocket::set_upgrade_headers(&mut parts.headers);
        let empty = Empty::new().map_err(|never| match never {}).boxed();
        return Response::from_parts(parts, empty);
    }
    let upstream = &pipeline.upstream;
    let body = ResponseBody::new(body, upstream.timeouts.read, Arc::clone(&upstream.name)).boxed();
    Response::from_parts(parts, body)
}

/// What the request names, read once.
struct Target {
    /// As the client sent it: the URI's authority (HTTP/2 `:authority`,
    /// absolute-form) or else `Host`.
    host_header: Option<HeaderValue>,
    /// Normalised (nginx `$host`).
    host: Option<String>,
    /// Decoded and normalised (nginx `$uri`).
    path: String,
    request_uri: PathAndQuery,
}

impl Target {
    fn of(parts: &Parts) -> Result<Target, ProxyError> {
        let host_header = host_header(parts)?;
        let host = host_header
            .as_ref()
            .and_then(|value| value.to_str().ok())
            .map(normalize_host)
            .filter(|host| !host.is_empty());
        Ok(Target {
            path: normalize_path(parts.uri.path())?.into_owned(),
            request_uri: parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            host_header,
            host,
        })
    }
}

/// The server the request names. Two `Host` headers, or an HTTP/2
/// `:authority` and `Host` naming different servers, are refused: the
/// gateway and the upstream could each pick another one. (An HTTP/1.1
/// absolute-form target overrides `Host`, RFC 9112 §3.2.2.)
fn host_header(parts: &Parts) -> Result<Option<HeaderValue>, ProxyError> {
    let mut hosts = parts.headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::MultipleHosts);
    }
    let Some(authority) = parts.uri.authority() else {
        return Ok(host.cloned());
    };
    let authority = authority.as_str().rsplit('@').next().unwrap_or_default();
    match host {
        Some(host)
            if parts.version == Version::HTTP_2
                && !host.as_bytes().eq_ignore_ascii_case(authority.as_bytes()) =>
        {
            Err(ProxyError::AuthorityMismatch {
                authority: authority.to_owned(),
                host: String::from_utf8_lossy(host.as_bytes()).into_owned(),
            })
        }
        _ => Ok(HeaderValue::from_str(authority).ok()),
    }
}

#[cfg(test)]
mod tests;
