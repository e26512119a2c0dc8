//! Listeners: accept TCP, run the TLS handshake (on HTTPS listeners), then
//! serve HTTP/1.1 and HTTP/2 on the connection with [`Proxy`].
//!
//! Graceful shutdown: when the shutdown signal fires, listeners stop
//! accepting and every open connection is told to finish its in-flight
//! requests; [`Listener::serve`] returns once they have (or the drain
//! timeout passed).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::context::ConnInfo;
use crate::proxy::Proxy;
use crate::snapshot::Snapshot;
use crate::tls;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Resolves when shutdown begins.
#[derive(Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    /// A signal and the trigger that fires it.
    pub fn new() -> (watch::Sender<bool>, ShutdownSignal) {
        let (tx, rx) = watch::channel(false);
        (tx, ShutdownSignal(rx))
    }

    pub async fn fired(mut self) {
        // An error means the trigger is gone, which also means shutdown.
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}

/// Whether a listener terminates TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
}

/// One bound listening socket.
pub struct Listener {
    socket: TcpListener,
    protocol: Protocol,
}

impl Listener {
    pub async fn bind(addr: &str, protocol: Protocol) -> std::io::Result<Listener> {
        let socket = TcpListener::bind(addr).await?;
        Ok(Listener { socket, protocol })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Accepts until `shutdown`, then drains.
    pub async fn serve(self, proxy: Arc<Proxy>, snapshot: Arc<ArcSwap<Snapshot>>, shutdown: ShutdownSignal) {
        let graceful = GracefulShutdown::new();
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        let stop = shutdown.fired();
        tokio::pin!(stop);
        loop {
            let (tcp, remote_addr) = tokio::select! {
                _ = &mut stop => break,
                accepted = self.socket.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let conn = Connection {
                builder: Arc::clone(&builder),
                proxy: Arc::clone(&proxy),
                watcher: graceful.watcher(),
                remote_addr,
            };
            match self.protocol {
                Protocol::Http => tokio::spawn(conn.serve_plain(tcp)),
                Protocol::Https => tokio::spawn(conn.serve_tls(tcp, snapshot.load_full())),
            };
        }
        drain(graceful).await;
    }
}

async fn drain(graceful: GracefulShutdown) {
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, "connections still open after the drain timeout; closing them");
    }
}

/// One accepted connection on its way to being served.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    proxy: Arc<Proxy>,
    watcher: hyper_util::server::graceful::Watcher,
    remote_addr: SocketAddr,
}

impl Connection {
    async fn serve_plain(self, tcp: TcpStream) {
        let Some(info) = self.conn_info(&tcp) else { return };
        self.serve_http(tcp, info).await;
    }

    async fn serve_tls(self, tcp: TcpStream, snapshot: Arc<Snapshot>) {
        let Some(mut info) = self.conn_info(&tcp) else { return };
        let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls::accept(tcp, &snapshot.tls)).await;
        // Release the snapshot: a long-lived connection must not pin old config.
        drop(snapshot);
        match accepted {
            Ok(Ok((stream, tls_info))) => {
                info.tls = Some(tls_info);
                self.serve_http(stream, info).await;
            }
            Ok(Err(err)) => tracing::info!(peer = %self.remote_addr, reason = %err, "TLS handshake refused"),
            Err(_) => tracing::info!(peer = %self.remote_addr, "TLS handshake timed out"),
        }
    }

    fn conn_info(&self, tcp: &TcpStream) -> Option<ConnInfo> {
        let _ = tcp.set_nodelay(true);
        let local_addr = tcp.local_addr().ok()?;
        Some(ConnInfo {
            remote_addr: self.remote_addr,
            local_addr,
            tls: None,
        })
    }

    async fn serve_http<IO>(self, io: IO, info: ConnInfo)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let info = Arc::new(info);
        let proxy = self.proxy;
        let service = service_fn(move |req| {
            let proxy = Arc::clone(&proxy);
            let info = Arc::clone(&info);
            async move { Ok::<_, Infallible>(proxy.handle(req, &info).await) }
        });
        let conn = self.builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        if let Err(err) = self.watcher.watch(conn.into_owned()).await {
            tracing::debug!(peer = %self.remote_addr, %err, "connection closed with an error");
        }
    }
}
