//! Listening sockets that a successor process can share (`SO_REUSEPORT`),
//! and the hand-over of the accept queue when one closes.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

/// Pending connections the kernel queues for us (as `std` and tokio use).
const BACKLOG: i32 = 1024;

/// Binds `addr` (`host:port`; the first resolved address that binds wins).
/// With `reuse_port`, another process may bind the same address meanwhile
/// and the kernel spreads new connections over both: that is how a new
/// gateway takes over the ports before the old one stops.
pub(crate) async fn bind(addr: &str, reuse_port: bool) -> io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr, reuse_port).await?)
}

/// [`bind`], returning the socket not yet registered with a runtime: a
/// worker thread registers it with its own.
pub(crate) async fn bind_std(addr: &str, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let mut last_error = None;
    for resolved in tokio::net::lookup_host(addr).await? {
        match bind_exact(resolved, reuse_port) {
            Ok(listener) => return Ok(listener),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} resolves to no address"),
        )
    }))
}

/// Binds exactly `addr`, non-blocking.
pub(crate) fn bind_exact(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // As std and tokio do: rebinding right after a restart must not wait
    // for TIME_WAIT connections to expire.
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(reuse_port)?;
    #[cfg(not(unix))]
    let _ = reuse_port;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Closes the listener after taking every connection already in its accept
/// queue: closing a socket resets whatever it still queues, and with
/// `SO_REUSEPORT` new connections go to the sockets that stay open.
pub(crate) fn close_after_backlog(listener: TcpListener) -> Vec<(TcpStream, SocketAddr)> {
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(err) => {
            tracing::warn!(%err, "cannot take the accept queue before closing the listener");
            return Vec::new();
        }
    };
    let mut taken = Vec::new();
    // The socket is non-blocking: `WouldBlock` means the queue is empty.
    while let Ok((tcp, remote_addr)) = listener.accept() {
        let stream = tcp
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(tcp));
        match stream {
            Ok(stream) => taken.push((stream, remote_addr)),
            Err(err) => tracing::debug!(%err, peer = %remote_addr, "dropping a queued connection"),
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_sockets_share_a_port_only_with_reuse_port() {
        let first = bind("127.0.0.1:0", true).await.expect("bind");
        let addr = first.local_addr().expect("addr").to_string();
        let second = bind(&addr, true)
            .await
            .expect("a second socket joins the port");
        assert!(
            bind(&addr, false).await.is_err(),
            "without SO_REUSEPORT the port is taken"
        );
        drop((first, second));
    }

    #[tokio::test]
    async fn queued_connections_survive_the_close() {
        let listener = bind("127.0.0.1:0", false).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let clients: Vec<_> =
            futures_util::future::join_all((0..3).map(|_| TcpStream::connect(addr))).await;
        assert!(clients.iter().all(Result::is_ok));
        let taken = close_after_backlog(listener);
        assert_eq!(taken.len(), 3, "every queued connection is handed over");
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the socket is closed"
        );
    }
}
