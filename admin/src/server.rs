//! The admin listener: plain HTTP, or HTTPS only with `deployment.admin.tls`.
//!
//! Every client is bounded (`deployment.admin.timeouts` and
//! `max_connections`), and the allow-list is checked on the TCP peer address
//! as soon as a connection is accepted, so an address outside it costs no
//! TLS handshake and no request parsing. Each request still carries its peer
//! address (axum `ConnectInfo`) for the allow-list middleware behind it.

mod deadline;
mod idle;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use shared::config::AdminConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

pub(crate) use self::deadline::BodyTimedOut;
use self::deadline::DeadlineBody;
use self::idle::IdleIo;
use crate::tls::AdminTls;
use crate::{router, AdminState};

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// At most one log line per this long about refused or waiting connections.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How the admin listener bounds its clients.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From accept to the end of the TLS handshake.
    pub handshake: Duration,
    /// For a request's headers (and the wait for the next request on a
    /// keep-alive HTTP/1.1 connection), and again for its body.
    pub header_read: Duration,
    /// Nothing received or sent for this long closes the connection.
    pub idle: Duration,
    /// Concurrent connections; beyond it, new ones wait in the backlog.
    pub max_connections: usize,
}

impl Limits {
    /// `deployment.admin.timeouts` and `max_connections`.
    pub fn of(config: &AdminConfig) -> Limits {
        Limits {
            handshake: config.timeouts.handshake(),
            header_read: config.timeouts.header_read(),
            idle: config.timeouts.idle(),
            max_connections: config.max_connections,
        }
    }
}

/// Serves the admin API over plain HTTP on `listener` until `shutdown`
/// completes, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run(listener, state, None, limits, shutdown).await
}

/// Serves the admin API over HTTPS only on `listener` until `shutdown`
/// completes, then lets in-flight requests finish. Each handshake uses the
/// newest configuration in `tls`; with a client CA, a client without a
/// valid certificate is refused at the handshake.
pub async fn serve_tls(
    listener: TcpListener,
    state: AdminState,
    tls: AdminTls,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run(listener, state, Some(tls), limits, shutdown).await
}

async fn run(
    listener: TcpListener,
    state: AdminState,
    tls: Option<AdminTls>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let allow = state.allow.clone();
    let connections = Arc::new(Connections::new(router(state), tls, limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let (mut waiting_log, mut refused_log) = (Throttle::default(), Throttle::default());
    tokio::pin!(shutdown);
    loop {
        // At the cap, accept nothing until a connection closes: the kernel's
        // listen backlog holds new clients meanwhile, and they are served in
        // turn as the timeouts free slots.
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if let Some(times) = waiting_log.due() {
                    tracing::warn!(max = limits.max_connections, times, "deployment.admin.max_connections reached: new connections wait until one closes");
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(%err, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !allow.allows(peer.ip()) {
            // Dropped: closed before any TLS or HTTP work.
            if let Some(times) = refused_log.due() {
                tracing::info!(%peer, times, "admin connection refused: source address outside deployment.admin.allow");
            }
            continue;
        }
        let conn = Arc::clone(&connections);
        tokio::spawn(conn.serve(tcp, peer, slot, graceful.watcher()));
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, "admin connections still open after the drain timeout; closing them");
    }
    Ok(())
}

/// What every admin connection is served with, built once.
struct Connections {
    app: Router,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<AdminTls>,
    limits: Limits,
}

impl Connections {
    fn new(app: Router, tls: Option<AdminTls>, limits: Limits) -> Connections {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read);
        builder.http2().timer(TokioTimer::new());
        Connections {
            app,
            builder,
            tls,
            limits,
        }
    }

    /// Serves one accepted connection; its slot is released when it ends.
    async fn serve(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        _slot: OwnedSemaphorePermit,
        watcher: Watcher,
    ) {
        let _ = tcp.set_nodelay(true);
        let io = IdleIo::new(tcp, self.limits.idle);
        let Some(tls) = &self.tls else {
            return self.serve_http(io, peer, watcher).await;
        };
        let handshake = TlsAcceptor::from(tls.current()).accept(io);
        match tokio::time::timeout(self.limits.handshake, handshake).await {
            Ok(Ok(stream)) => self.serve_http(stream, peer, watcher).await,
            Ok(Err(err)) => {
                tracing::info!(%peer, reason = %err, "admin TLS handshake refused");
            }
            Err(_) => {
                tracing::info!(%peer, timeout = ?self.limits.handshake, "admin TLS handshake not completed within deployment.admin.timeouts.handshake; closing");
            }
        }
    }

    async fn serve_http<IO>(&self, io: IO, peer: SocketAddr, watcher: Watcher)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (app, body_limit) = (self.app.clone(), self.limits.header_read);
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(|body| DeadlineBody::new(body, body_limit));
            request.extensions_mut().insert(ConnectInfo(peer));
            // A Router is always ready; `call` needs no `poll_ready` first.
            app.clone().call(request)
        });
        let conn = self
            .builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        if let Err(err) = watcher.watch(conn).await {
            tracing::debug!(%peer, %err, "admin connection closed with an error");
        }
    }
}

/// Rate-limits a repeated log line; counts what it held back.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    times: u64,
}

impl Throttle {
    /// `Some(occurrences since the last line)` when a line is due.
    fn due(&mut self) -> Option<u64> {
        self.times += 1;
        if self.last.is_some_and(|last| last.elapsed() < LOG_INTERVAL) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.times))
    }
}

#[cfg(test)]
mod tests;
