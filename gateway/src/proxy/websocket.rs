//! WebSocket proxying (a route's `enable_websocket`), HTTP/1.1 only: the
//! client's upgrade request reaches the upstream with `Upgrade: websocket`
//! and `Connection: upgrade` put back (hop-by-hop, so stripped like any
//! other before the plugins ran); the `Sec-WebSocket-*` headers are
//! end-to-end and pass untouched. When the upstream switches protocols,
//! the client gets its `101` and both upgraded connections are spliced
//! until either side closes. Any other answer is relayed as usual.
//!
//! HTTP/2 WebSockets (RFC 8441 extended CONNECT) are not proxied.

use std::future::Future;
use std::io;
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use http::request::Parts;
use http::{Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};

use crate::context::ConnHold;

/// Whether `headers` ask for a WebSocket upgrade: an `Upgrade` token
/// `websocket` and a `Connection` token `upgrade`, both case-insensitive
/// (RFC 6455 §4.2.1, RFC 9110 §7.8).
pub(super) fn asks_for_upgrade(headers: &HeaderMap) -> bool {
    has_token(headers, &UPGRADE, "websocket") && has_token(headers, &CONNECTION, "upgrade")
}

/// Whether any of `name`'s comma-separated values is `token`.
fn has_token(headers: &HeaderMap, name: &http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// The client's side of an upgrade the gateway is about to proxy.
pub(super) struct ClientUpgrade(OnUpgrade);

impl ClientUpgrade {
    /// Takes the client connection's pending upgrade out of an HTTP/1.1
    /// request (before the request is consumed), and puts back the headers
    /// that ask the upstream for it. `None` (nothing changed) when there is
    /// no pending upgrade to take.
    pub(super) fn take(parts: &mut Parts) -> Option<ClientUpgrade> {
        if parts.version != Version::HTTP_11 {
            return None;
        }
        let pending = parts.extensions.remove::<OnUpgrade>()?;
        set_upgrade_headers(&mut parts.headers);
        Some(ClientUpgrade(pending))
    }

    /// When `response` switches protocols, splices both upgraded
    /// connections on a task of this worker (the client's completes once
    /// its `101` is written; put [`set_upgrade_headers`] back on that).
    /// `false` for any other answer, relayed as a normal response.
    ///
    /// The splice keeps `hold` (the client connection's slot and the
    /// shutdown signal): the WebSocket counts under `proxy.max_connections`
    /// and a graceful shutdown closes it and waits for it.
    pub(super) fn splice_if_switched(
        self,
        response: &mut Response<Incoming>,
        route: &str,
        hold: Option<ConnHold>,
    ) -> bool {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return false;
        }
        let upstream = hyper::upgrade::on(response);
        tokio::spawn(splice(self.0, upstream, route.to_owned(), hold));
        true
    }
}

/// The hop-by-hop headers of a WebSocket upgrade, request or `101`.
pub(super) fn set_upgrade_headers(headers: &mut HeaderMap) {
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
}

/// How long one direction may go on once the other ended cleanly: time
/// for a closing handshake in flight, not for a half-open connection to
/// linger.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Relays both upgraded connections until either side closes, or the
/// gateway shuts down; `hold` is released with it.
async fn splice(client: OnUpgrade, upstream: OnUpgrade, route: String, hold: Option<ConnHold>) {
    let relay = async {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(upgraded) => upgraded,
            Err(err) => {
                return tracing::debug!(route, %err, "WebSocket upgrade not completed");
            }
        };
        match relay_both_ways(TokioIo::new(client), TokioIo::new(upstream)).await {
            Ok(()) => tracing::debug!(route, "WebSocket closed"),
            Err(err) => tracing::debug!(route, %err, "WebSocket ended with an error"),
        }
    };
    let Some(hold) = hold else {
        return relay.await;
    };
    tokio::select! {
        () = relay => {}
        () = hold.shutdown.clone().fired() => {
            tracing::debug!(route, "WebSocket closed: the gateway is shutting down");
        }
    }
}

/// Copies bytes both ways. When one side closes, the other is told (its
/// write half shut down) and gets [`CLOSE_GRACE`] to finish; on an error,
/// or once the grace ends, both are dropped, which closes them.
async fn relay_both_ways<C, U>(client: C, upstream: U) -> io::Result<()>
where
    C: AsyncRead + AsyncWrite,
    U: AsyncRead + AsyncWrite,
{
    let (client_read, client_write) = tokio::io::split(client);
    let (upstream_read, upstream_write) = tokio::io::split(upstream);
    let to_upstream = pipe(client_read, upstream_write);
    let to_client = pipe(upstream_read, client_write);
    tokio::pin!(to_upstream, to_client);
    tokio::select! {
        ended = &mut to_upstream => { ended?; within_grace(to_client).await }
        ended = &mut to_client => { ended?; within_grace(to_upstream).await }
    }
}

/// The rest of one direction, cut short after [`CLOSE_GRACE`] (then
/// dropped all the same: not an error).
async fn within_grace(rest: impl Future<Output = io::Result<()>>) -> io::Result<()> {
    tokio::time::timeout(CLOSE_GRACE, rest)
        .await
        .unwrap_or(Ok(()))
}

/// Copies `from` into `to` until `from` ends, then shuts `to` down.
async fn pipe<R, W>(mut from: R, mut to: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    tokio::io::copy(&mut from, &mut to).await?;
    to.shutdown().await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, DuplexStream};
    use tokio::task::JoinHandle;
    use tokio::time::Instant;

    use super::*;

    fn headers(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    /// `future`'s output if it comes within `limit`; fails the test
    /// otherwise (time is paused: waits cost nothing).
    async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
        tokio::time::timeout(limit, future)
            .await
            .unwrap_or_else(|_| panic!("{what}: not within {limit:?}"))
    }

    /// A client and an upstream end, and the relay between them.
    fn relayed() -> (DuplexStream, DuplexStream, JoinHandle<io::Result<()>>) {
        let (client, gateway_client) = tokio::io::duplex(1024);
        let (upstream, gateway_upstream) = tokio::io::duplex(1024);
        let relay = tokio::spawn(relay_both_ways(gateway_client, gateway_upstream));
        (client, upstream, relay)
    }

    #[tokio::test(start_paused = true)]
    async fn relays_both_ways_then_closes_both_after_a_half_close() {
        let (mut client, mut upstream, relay) = relayed();
        let mut buf = [0; 4];
        client.write_all(b"ping").await.unwrap();
        upstream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        upstream.write_all(b"pong").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        // The client closes; the upstream is told but never closes itself.
        client.shutdown().await.unwrap();
        let read = within(CLOSE_GRACE / 2, "close passed on", upstream.read(&mut buf)).await;
        assert_eq!(read.unwrap(), 0);
        let started = Instant::now();
        within(CLOSE_GRACE * 2, "relay end", relay)
            .await
            .unwrap()
            .unwrap();
        assert!(started.elapsed() >= CLOSE_GRACE);
        assert!(
            upstream.write_all(b"late").await.is_err(),
            "upstream closed"
        );
        assert_eq!(client.read(&mut buf).await.unwrap(), 0, "client closed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_answered_by_a_close_ends_at_once() {
        let (mut client, mut upstream, relay) = relayed();
        upstream.shutdown().await.unwrap();
        let read = within(CLOSE_GRACE / 2, "close passed on", client.read(&mut [0; 1])).await;
        assert_eq!(read.unwrap(), 0);
        client.shutdown().await.unwrap();
        let started = Instant::now();
        within(CLOSE_GRACE * 2, "relay end", relay)
            .await
            .unwrap()
            .unwrap();
        assert!(started.elapsed() < CLOSE_GRACE);
    }

    #[test]
    fn upgrade_asks_need_both_tokens_in_any_case() {
        for fields in [
            &[("upgrade", "websocket"), ("connection", "Upgrade")][..],
            &[
                ("upgrade", "WebSocket"),
                ("connection", "keep-alive, upgrade"),
            ],
            &[("upgrade", "h2c, websocket"), ("connection", "UPGRADE")],
            &[
                ("upgrade", "websocket"),
                ("connection", "keep-alive"),
                ("connection", " upgrade "),
            ],
        ] {
            assert!(asks_for_upgrade(&headers(fields)), "{fields:?}");
        }
        for fields in [
            &[("upgrade", "websocket")][..],
            &[("connection", "upgrade")],
            &[("upgrade", "h2c"), ("connection", "upgrade")],
            &[("upgrade", "websockets"), ("connection", "upgrade")],
            &[("upgrade", "websocket"), ("connection", "upgraded")],
            &[("upgrade", "websocket"), ("connection", "keep-alive")],
        ] {
            assert!(!asks_for_upgrade(&headers(fields)), "{fields:?}");
        }
    }

    #[test]
    fn nothing_is_taken_or_changed_without_a_pending_http11_upgrade() {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        assert!(ClientUpgrade::take(&mut parts).is_none(), "nothing pending");
        assert!(parts.headers.is_empty(), "left unchanged");
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.version = Version::HTTP_2;
        assert!(ClientUpgrade::take(&mut parts).is_none(), "HTTP/2");
        assert!(parts.headers.is_empty(), "left unchanged");
    }
}
