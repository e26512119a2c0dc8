//! One accepted proxy connection: TLS handshake (HTTPS listeners), protocol
//! detection, then HTTP/1.1 or HTTP/2 with [`Proxy`], each step bounded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::CONNECTION;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use shared::config::ProxyConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::idle::Activity;
use super::limit::ConnectionLimit;
use super::sniff::{sniff, HttpVersion};
use super::Protocol;
use crate::context::{ConnHold, ConnInfo};
use crate::proxy::Proxy;
use crate::shutdown::ShutdownSignal;
use crate::snapshot::Snapshot;
use crate::tls;
use crate::{access_log, metrics};

/// Request headers larger than this get 431 (HTTP/1.1: the read buffer
/// limit; HTTP/2: the header list limit announced to the client).
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// More request header fields than this get 431 (HTTP/1.1).
const MAX_HEADERS: usize = 100;
/// Streams one HTTP/2 client may have open at once.
const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// Streams a client may open and reset before the server even picked them up
/// (the HTTP/2 "rapid reset" attack); beyond it the connection is closed
/// with GOAWAY.
const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the server may reset because of client protocol errors before it
/// closes the connection.
const H2_MAX_LOCAL_ERROR_RESETS: usize = 256;

/// What every proxy connection is served with, built once at startup.
pub struct Server {
    proxy: Arc<Proxy>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Told when the SNI table changes (see [`policy_outdated`]).
    tls_changes: watch::Receiver<()>,
    limit: Arc<ConnectionLimit>,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Server {
    pub fn new(
        proxy: Arc<Proxy>,
        snapshot: Arc<ArcSwap<Snapshot>>,
        tls_changes: watch::Receiver<()>,
        limit: Arc<ConnectionLimit>,
        config: &ProxyConfig,
    ) -> Arc<Server> {
        let header_read_timeout = config.timeouts.header_read();
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_buf_size(MAX_HEADER_BYTES)
            .max_headers(MAX_HEADERS);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS);
        Arc::new(Server {
            proxy,
            snapshot,
            tls_changes,
            limit,
            handshake_timeout: config.timeouts.handshake(),
            header_read_timeout,
            http1,
            http2,
        })
    }

    /// Serves `tcp` on its own task if the connection cap allows; otherwise
    /// closes it at once.
    pub(crate) fn admit(
        self: &Arc<Self>,
        tcp: TcpStream,
        remote_addr: SocketAddr,
        protocol: Protocol,
        shutdown: &ShutdownSignal,
        in_flight: &mpsc::Sender<()>,
    ) {
        let Some(permit) = self.limit.admit() else {
            return;
        };
        let conn = Connection {
            server: Arc::clone(self),
            remote_addr,
            hold: ConnHold::new(Arc::new((permit, in_flight.clone())), shutdown.clone()),
        };
        tokio::spawn(conn.serve(tcp, protocol));
    }
}

/// Drives a hyper connection to its end; once `$ended` completes (shutdown
/// begins; for HTTP/2 also the idle limit), asks it to finish what it has
/// started (HTTP/1.1: the current request; HTTP/2: GOAWAY, then the open
/// streams) and close.
///
/// A macro rather than a generic function: rustc cannot prove the
/// where-clauses of hyper's connection types for the future of a generic
/// `async fn` that is then spawned ("implementation of `From` is not general
/// enough").
macro_rules! until_done {
    ($conn:expr, $ended:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        tokio::select! {
            // The connection first: a request it already read is served.
            biased;
            output = conn.as_mut() => output,
            () = $ended => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    }};
}

/// One accepted connection; dropping it releases its slot.
struct Connection {
    server: Arc<Server>,
    remote_addr: SocketAddr,
    /// Its slot under `proxy.max_connections` and the sender that draining
    /// waits for, held until the connection ends (or, handed over to a
    /// WebSocket, until that ends); and the shutdown signal.
    hold: ConnHold,
}

impl Connection {
    async fn serve(self, tcp: TcpStream, protocol: Protocol) {
        let _ = tcp.set_nodelay(true);
        let Ok(local_addr) = tcp.local_addr() else {
            return;
        };
        let mut info = ConnInfo::new(self.remote_addr, local_addr, None);
        info.hold = Some(self.hold.clone());
        match protocol {
            Protocol::Http => self.serve_http(tcp, info).await,
            Protocol::Https => {
                let snapshot = self.server.snapshot.load_full();
                let accepted = tokio::time::timeout(
                    self.server.handshake_timeout,
                    tls::accept(tcp, &snapshot.tls),
                )
                .await;
                // Release the snapshot: a long-lived connection must not pin old config.
                drop(snapshot);
                match accepted {
                    Ok(Ok((stream, tls_info))) => {
                        metrics::tls::handshake_completed(&tls_info);
                        info.tls = Some(tls_info);
                        self.serve_http(stream, info).await;
                    }
                    Ok(Err(err)) => access_log::handshake_refused(self.remote_addr, &err),
                    Err(_) => access_log::handshake_timed_out(
                        self.remote_addr,
                        self.server.handshake_timeout,
                    ),
                }
            }
        }
    }

    async fn serve_http<IO>(self, io: IO, info: ConnInfo)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (version, io) = match tokio::time::timeout(self.server.header_read_timeout, sniff(io))
            .await
        {
            Ok(Ok(sniffed)) => sniffed,
            Ok(Err(err)) => {
                return tracing::debug!(peer = %self.remote_addr, %err, "connection closed before a request")
            }
            // Debug, not info: browsers open speculative connections they
            // may never use.
            Err(_) => {
                return tracing::debug!(
                    peer = %self.remote_addr,
                    timeout = ?self.server.header_read_timeout,
                    "no request within proxy.timeouts.header_read; closing"
                )
            }
        };
        let info = Arc::new(info);
        let proxy = Arc::clone(&self.server.proxy);
        let io = TokioIo::new(io);
        let shutdown = self.hold.shutdown.clone();
        let outdated = policy_outdated(
            self.server.tls_changes.clone(),
            &self.server.snapshot,
            Arc::clone(&info),
        );
        let ended = async {
            tokio::select! {
                () = shutdown.fired() => {}
                () = outdated => {
                    tracing::debug!(
                        peer = %self.remote_addr,
                        "the client-certificate policy this connection was judged under changed; closing it once idle"
                    );
                }
            }
        };
        let served = match version {
            HttpVersion::Http1 => {
                let service = service_fn(move |req| {
                    let proxy = Arc::clone(&proxy);
                    let info = Arc::clone(&info);
                    async move { Ok::<_, Infallible>(proxy.handle(req, &info).await) }
                });
                until_done!(
                    self.server
                        .http1
                        .serve_connection(io, service)
                        .with_upgrades(),
                    ended
                )
            }
            HttpVersion::Http2 => {
                let activity = Arc::new(Activity::default());
                let streams = Arc::clone(&activity);
                let service = service_fn(move |req| {
                    let proxy = Arc::clone(&proxy);
                    let info = Arc::clone(&info);
                    let stream = streams.start();
                    async move {
                        let mut response = proxy.handle(req, &info).await;
                        // HTTP/2 has no `Connection: close`: GOAWAY instead.
                        if response.headers_mut().remove(CONNECTION).is_some() {
                            stream.close_connection();
                        }
                        drop(stream);
                        Ok::<_, Infallible>(response)
                    }
                });
                let ended = async {
                    tokio::select! {
                        () = ended => {},
                        () = activity.ended(self.server.header_read_timeout) => {},
                    }
                };
                until_done!(self.server.http2.serve_connection(io, service), ended)
            }
        };
        if let Err(err) = served {
            tracing::debug!(peer = %self.remote_addr, %err, "connection closed with an error");
        }
    }
}

/// Completes once the SSL object serving the connection's SNI no longer
/// verifies client certificates as the one its handshake was judged under
/// (see `proxy::gate`), so that the connection closes gracefully: an idle
/// keep-alive connection is closed before its next request would meet a
/// 421. Never completes on plain HTTP. Woken only by SNI-table changes.
async fn policy_outdated(
    mut changes: watch::Receiver<()>,
    snapshot: &ArcSwap<Snapshot>,
    info: Arc<ConnInfo>,
) {
    let Some(tls) = &info.tls else {
        return std::future::pending().await;
    };
    // Checked before the first wait: a change may have come between the
    // handshake and here.
    while tls::client_policy_is_current(tls, &snapshot.load().tls) {
        if changes.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
