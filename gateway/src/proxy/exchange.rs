//! The record of one request: filled as the request goes through the
//! phases, closed once at the proxy's single exit point
//! ([`super::Proxy::handle`]), where the plugins' `log` phase runs and the
//! request is counted and logged.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{Request, Response, StatusCode};
use hyper::body::Body as _;

use crate::access_log::{self, RequestHead, RequestId, RequestLine};
use crate::context::ConnInfo;
use crate::metrics::{self, request::RequestSample, RouteMetrics};
use crate::plugins::LogCtx;
use crate::reply::ProxyBody;
use crate::router::RouteEntry;
use crate::upstream::Node;

/// What one request did; `'s` is the snapshot serving it.
pub(super) struct Exchange<'s> {
    started: Instant,
    /// Only when the access log is on.
    request: Option<RequestHead>,
    bytes_in: u64,
    pub(super) request_id: Option<RequestId>,
    pub(super) route: Option<&'s Arc<RouteEntry>>,
    /// The route's host pattern the request matched.
    pub(super) matched_host: &'s str,
    /// The upstream node of the last attempt.
    pub(super) node: Option<&'s Node>,
    /// The upstream's status and how long it took to answer.
    pub(super) upstream: Option<(StatusCode, Duration)>,
}

impl<'s> Exchange<'s> {
    pub(super) fn start<B: hyper::body::Body>(req: &Request<B>) -> Exchange<'s> {
        let request = access_log::format().map(|format| RequestHead::of(req, format));
        Exchange {
            started: Instant::now(),
            request,
            bytes_in: req.body().size_hint().lower(),
            request_id: None,
            route: None,
            matched_host: "",
            node: None,
            upstream: None,
        }
    }

    /// Whether the request gets an `X-Request-Id` (the access log is on).
    pub(super) fn wants_request_id(&self) -> bool {
        self.request.is_some()
    }

    /// The single exit point: `log` phase, metrics, access log.
    pub(super) fn finish(self, conn: &ConnInfo, response: &Response<ProxyBody>) {
        let took = self.started.elapsed();
        let status = response.status();
        let hint = response.body().size_hint();
        let bytes_out = hint.exact().unwrap_or(hint.lower());
        if let Some(route) = self.route {
            if let Ok(pipeline) = route.pipeline() {
                pipeline.plugins.log(&LogCtx {
                    conn,
                    route_id: &route.id,
                    status,
                    request_id: self.request_id.as_ref().map(RequestId::header),
                    duration: took,
                    upstream_status: self.upstream.map(|(status, _)| status),
                });
            }
        }
        if metrics::enabled() {
            RequestSample {
                route: match self.route {
                    Some(route) => &route.metrics,
                    None => RouteMetrics::unrouted(),
                },
                matched_host: self.matched_host,
                code: status.as_u16(),
                node: self.node.map_or("", Node::address),
                consumer: "",
                bytes_in: self.bytes_in,
                bytes_out,
                total: took,
                upstream: self.upstream.map(|(_, took)| took),
            }
            .record();
        }
        let Some(head) = &self.request else {
            return;
        };
        access_log::request(&RequestLine {
            time: SystemTime::now(),
            request_id: self.request_id.as_ref(),
            conn,
            route_id: self.route.map(|route| &route.log_id),
            head,
            status: status.as_u16(),
            bytes_in: self.bytes_in,
            bytes_out,
            upstream_addr: self.node.map(Node::log_address),
            upstream_status: self.upstream.map(|(status, _)| status.as_u16()),
            request_time: took,
            upstream_time: self.upstream.map(|(_, took)| took),
        });
    }
}
