//! Listeners: accept TCP, run the TLS handshake (on HTTPS listeners), then
//! serve HTTP/1.1 and HTTP/2 on the connection with [`Proxy`].
//!
//! Hostile clients are bounded at every step: `proxy.max_connections` caps
//! open connections (over the cap a connection is closed at accept),
//! `proxy.timeouts.handshake` bounds the TLS handshake,
//! `proxy.timeouts.header_read` bounds the wait for a request's headers,
//! headers beyond 64 KiB get 431, and HTTP/2 limits concurrent and
//! rapidly reset streams.
//!
//! Graceful shutdown: when the shutdown signal fires, listeners stop
//! accepting (taking the connections already queued in the kernel, which
//! closing the socket would reset) and every open connection is told to
//! finish its in-flight requests; [`Listener::serve`] returns once they have
//! (or the drain timeout passed). Listeners bind with `SO_REUSEPORT`, so a
//! new process can take the ports over before the old one stops.
//!
//! [`Proxy`]: crate::proxy::Proxy

mod conn;
mod limit;
mod sniff;
mod socket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use conn::Server;
pub use limit::ConnectionLimit;
pub(crate) use socket::bind as bind_socket;

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
    /// Binds `addr`; with `reuse_port`, sharing it with other processes
    /// (`SO_REUSEPORT`, for rolling restarts).
    pub async fn bind(
        addr: &str,
        protocol: Protocol,
        reuse_port: bool,
    ) -> std::io::Result<Listener> {
        let socket = socket::bind(addr, reuse_port).await?;
        Ok(Listener { socket, protocol })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Accepts until `shutdown`, then drains.
    pub async fn serve(self, server: Arc<Server>, shutdown: ShutdownSignal) {
        let Listener { socket, protocol } = self;
        // Each connection holds a sender; `recv` yields `None` once all are gone.
        let (in_flight, mut drained) = mpsc::channel::<()>(1);
        let stop = shutdown.clone().fired();
        tokio::pin!(stop);
        loop {
            let (tcp, remote_addr) = tokio::select! {
                _ = &mut stop => break,
                accepted = socket.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            server.admit(tcp, remote_addr, protocol, &shutdown, &in_flight);
        }
        for (tcp, remote_addr) in socket::close_after_backlog(socket) {
            server.admit(tcp, remote_addr, protocol, &shutdown, &in_flight);
        }
        drop(in_flight);
        if tokio::time::timeout(DRAIN_TIMEOUT, drained.recv())
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?DRAIN_TIMEOUT, "connections still open after the drain timeout; closing them");
        }
    }
}
