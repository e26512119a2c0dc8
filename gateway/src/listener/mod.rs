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
//! Each proxy worker thread ([`Workers`]) serves its own copy of every
//! listener: with `SO_REUSEPORT` a socket of its own, among which the
//! kernel spreads new connections.
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
mod idle;
mod limit;
mod sniff;
mod socket;
mod workers;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use conn::Server;
pub use limit::ConnectionLimit;
pub(crate) use socket::bind as bind_socket;
pub use workers::Workers;

use crate::shutdown::ShutdownSignal;

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a listener terminates TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
}

/// One bound listening socket, registered with a runtime only once it
/// serves (so that it can be handed to a worker thread first).
pub struct Listener {
    socket: std::net::TcpListener,
    protocol: Protocol,
}

impl Listener {
    /// Binds `addr`; with `reuse_port`, sharing it with other processes
    /// (`SO_REUSEPORT`, for rolling restarts).
    pub async fn bind(addr: &str, protocol: Protocol, reuse_port: bool) -> io::Result<Listener> {
        let socket = socket::bind_std(addr, reuse_port).await?;
        Ok(Listener { socket, protocol })
    }

    /// A listener on the same address for one more worker thread. With
    /// `reuse_port`, a socket of its own in the same `SO_REUSEPORT` group,
    /// among which the kernel spreads new connections; without, the same
    /// socket, accepted from by whichever worker is first.
    pub fn sibling(&self, reuse_port: bool) -> io::Result<Listener> {
        let socket = if reuse_port {
            socket::bind_exact(self.local_addr()?, true)?
        } else {
            self.socket.try_clone()?
        };
        Ok(Listener {
            socket,
            protocol: self.protocol,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Accepts until `shutdown`, then drains. Runs on the runtime that
    /// serves the accepted connections.
    pub async fn serve(self, server: Arc<Server>, shutdown: ShutdownSignal) {
        let Listener { socket, protocol } = self;
        let socket = match TcpListener::from_std(socket) {
            Ok(socket) => socket,
            Err(err) => {
                tracing::error!(%err, "cannot register a proxy listener with its runtime");
                return;
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn connect_and_accept(listener: Listener) -> SocketAddr {
        let addr = listener.local_addr().expect("addr");
        let socket = TcpListener::from_std(listener.socket).expect("register");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (_, peer) = socket.accept().await.expect("accept");
        assert_eq!(peer, client.local_addr().expect("client addr"));
        addr
    }

    #[tokio::test]
    async fn siblings_listen_on_the_same_address() {
        for reuse_port in [true, false] {
            let first = Listener::bind("127.0.0.1:0", Protocol::Https, reuse_port)
                .await
                .expect("bind");
            let sibling = first.sibling(reuse_port).expect("sibling");
            assert_eq!(sibling.protocol, Protocol::Https);
            let addr = first.local_addr().expect("addr");
            assert_eq!(sibling.local_addr().expect("addr"), addr);
            if !reuse_port {
                // The same socket: what one accepts, the other would have.
                drop(first);
                assert_eq!(connect_and_accept(sibling).await, addr);
            }
        }
    }
}
