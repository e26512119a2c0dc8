//! A real upstream: an HTTP/1.1 echo server, like httpbin's `/anything`.
//!
//! It runs on its own thread and runtime so that a test blocked in a
//! synchronous client (the `curl` CLI) never starves it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// A real upstream: HTTP/1.1 echo server on a free loopback port. It answers
/// 200 with JSON `{"method","uri","headers":{lowercase-name: value},"body"}`
/// (repeated headers joined by ", "). `/delay/<ms>...` answers after `<ms>`
/// milliseconds, to provoke upstream timeouts. Stopped on drop.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Starts on a free loopback port.
    pub async fn start() -> crate::Result<EchoServer> {
        EchoServer::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (e.g. a fixed port for the quickstart).
    pub async fn bind(addr: SocketAddr) -> crate::Result<EchoServer> {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot bind the echo server to {addr}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let hits = Arc::new(AtomicUsize::new(0));
        let (shutdown, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let counter = Arc::clone(&hits);
        let thread = std::thread::Builder::new()
            .name(format!("echo-{addr}"))
            .spawn(move || runtime.block_on(serve(listener, counter, stopped)))?;
        Ok(EchoServer {
            addr,
            hits,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, as a route's upstream node.
    pub fn node(&self) -> String {
        self.addr.to_string()
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for EchoServer {
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
async fn serve(
    listener: std::net::TcpListener,
    hits: Arc<AtomicUsize>,
    mut stopped: oneshot::Receiver<()>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let hits = Arc::clone(&hits);
                connections.spawn(async move {
                    let service = service_fn(move |req| echo(req, Arc::clone(&hits)));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn echo(
    req: Request<Incoming>,
    hits: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    if let Some(delay) = requested_delay(req.uri().path()) {
        tokio::time::sleep(delay).await;
    }
    let mut headers = Map::new();
    for name in req.headers().keys() {
        let values: Vec<String> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(name.as_str().to_owned(), Value::from(values.join(", ")));
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let body = match req.into_body().collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        Err(e) => format!("<body error: {e}>"),
    };
    let json = json!({ "method": method, "uri": uri, "headers": headers, "body": body });
    let mut response = Response::new(Full::new(Bytes::from(json.to_string())));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// `/delay/<ms>` and `/delay/<ms>/...`.
fn requested_delay(path: &str) -> Option<Duration> {
    let rest = path.strip_prefix("/delay/")?;
    let ms = rest.split('/').next()?.parse().ok()?;
    Some(Duration::from_millis(ms))
}
