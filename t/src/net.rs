//! Loopback ports for the processes under test.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpStream;

/// Ports already handed out by this test binary: the kernel may give the same
/// free port to two tests that bind `:0` and release it before their child
/// process binds it, so this process never hands out a port twice.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback TCP port nothing listens on right now (bind `127.0.0.1:0`, then release it).
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("cannot bind a loopback port");
        let mut taken = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if taken.insert(port) {
            return port;
        }
    }
}

/// A loopback address on a free port.
pub(crate) fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Whether something accepts TCP connections on `addr`.
pub(crate) async fn accepts(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}
