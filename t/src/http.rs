//! A minimal plain-HTTP/1.1 client (one connection per request) for the admin
//! API and the etcd health endpoint.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// No harness request may hang a test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Status and body of one response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

/// Sends one request to `addr` and reads the whole response.
pub(crate) async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> crate::Result<Reply> {
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        exchange(addr, method.clone(), path, headers, body),
    )
    .await
    .with_context(|| {
        format!("{method} http://{addr}{path}: no response within {REQUEST_TIMEOUT:?}")
    })?
    .with_context(|| format!("{method} http://{addr}{path}"))
}

async fn exchange(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> crate::Result<Reply> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if body.is_some() {
        request = request.header(http::header::CONTENT_TYPE, "application/json");
    }
    let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    conn.abort();
    Ok(Reply { status, body })
}
