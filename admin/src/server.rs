//! The admin listener: plain HTTP, or HTTPS only with `deployment.admin.tls`.
//!
//! Either way every request carries its TCP peer address (axum
//! `ConnectInfo`), which the allow-list checks.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::tls::AdminTls;
use crate::{router, AdminState};

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the admin API over plain HTTP on `listener` until `shutdown`
/// completes, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves the admin API over HTTPS only on `listener` until `shutdown`
/// completes, then lets in-flight requests finish. Each handshake uses the
/// newest configuration in `tls`; with a client CA, a client without a
/// valid certificate is refused at the handshake.
pub async fn serve_tls(
    listener: TcpListener,
    state: AdminState,
    tls: AdminTls,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state);
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
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
        let conn = TlsConnection {
            peer,
            app: app.clone(),
            builder: Arc::clone(&builder),
            watcher: graceful.watcher(),
        };
        tokio::spawn(conn.serve(tcp, tls.current()));
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, "admin connections still open after the drain timeout; closing them");
    }
    Ok(())
}

/// One accepted admin connection on its way to being served.
struct TlsConnection {
    peer: SocketAddr,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
}

impl TlsConnection {
    async fn serve(self, tcp: TcpStream, config: Arc<ServerConfig>) {
        let _ = tcp.set_nodelay(true);
        let handshake = TlsAcceptor::from(config).accept(tcp);
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                tracing::info!(peer = %self.peer, reason = %err, "admin TLS handshake refused");
                return;
            }
            Err(_) => {
                tracing::info!(peer = %self.peer, "admin TLS handshake timed out");
                return;
            }
        };
        let (peer, app) = (self.peer, self.app);
        let service = service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            // A Router is always ready; `call` needs no `poll_ready` first.
            app.clone().call(request)
        });
        let conn = self
            .builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        if let Err(err) = self.watcher.watch(conn).await {
            tracing::debug!(%peer, %err, "admin connection closed with an error");
        }
    }
}

#[cfg(test)]
mod tests;
