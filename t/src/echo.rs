//! A real upstream: an HTTP/1.1 echo server, like httpbin's `/anything`.
//!
//! It runs on its own thread and runtime so that a test blocked in a
//! synchronous client (the `curl` CLI) never starves it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};

use crate::server_thread::ServerThread;

/// A real upstream: HTTP/1.1 echo server on a free loopback port. It answers
/// 200 with JSON `{"method","uri","headers":{lowercase-name: value},"body"}`
/// (repeated headers joined by ", "). `/delay/<ms>...` answers after `<ms>`
/// milliseconds, to provoke upstream timeouts. Stopped on drop.
#[derive(Debug)]
pub struct EchoServer {
    server: ServerThread,
    hits: Arc<AtomicUsize>,
}

impl EchoServer {
    /// Starts on a free loopback port.
    pub async fn start() -> crate::Result<EchoServer> {
        EchoServer::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (e.g. a fixed port for the quickstart).
    pub async fn bind(addr: SocketAddr) -> crate::Result<EchoServer> {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let server = ServerThread::spawn("echo", addr, move |stream| {
            let hits = Arc::clone(&counter);
            async move {
                let service = service_fn(move |req| echo(req, Arc::clone(&hits)));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        })?;
        Ok(EchoServer { server, hits })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `127.0.0.1:PORT`, as a route's upstream node.
    pub fn node(&self) -> String {
        self.server.addr().to_string()
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
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
