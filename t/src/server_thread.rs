//! A test server on its own thread and runtime, so that a test blocked in a
//! synchronous client (the `curl` CLI) never starves it.

use std::future::Future;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// Accepts on a loopback listener and serves each connection in a task.
/// Stopped on drop, which also closes every open connection.
#[derive(Debug)]
pub(crate) struct ServerThread {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Binds `addr` (port 0: a free one) and runs `serve_connection` for every
    /// accepted connection. `what` names the server in errors and the thread name.
    pub(crate) fn spawn<F, Fut>(
        what: &str,
        addr: SocketAddr,
        serve_connection: F,
    ) -> crate::Result<ServerThread>
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot bind the {what} to {addr}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(format!("{what}-{addr}"))
            .spawn(move || runtime.block_on(accept(listener, serve_connection, stopped)))?;
        Ok(ServerThread {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts until `stopped` fires; dropping the `JoinSet` then closes every connection.
async fn accept<F, Fut>(
    listener: std::net::TcpListener,
    serve_connection: F,
    mut stopped: oneshot::Receiver<()>,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                connections.spawn(serve_connection(stream));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
