//! OCSP over HTTP: one POST (RFC 6960 appendix A), bounded in time and
//! size; and the GET of a CRL from a distribution point. Both are plain
//! `http://` by design (responses and CRLs are signed).

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::TcpStream;

/// No OCSP response is this large; a larger body is refused.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Why a responder gave no response.
#[derive(Debug, Error)]
pub(crate) enum FetchError {
    #[error("{0} is not an http:// URL")]
    Url(String),
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    Http { url: String, status: StatusCode },
    #[error("{url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
}

/// No CRL a client certificate's CA publishes for us is this large.
const MAX_CRL_BYTES: usize = 8 * 1024 * 1024;

/// POSTs `body` (`application/ocsp-request`) to `url`; returns the
/// response body of a 200.
pub(crate) async fn post(url: &str, body: &[u8], timeout: Duration) -> Result<Vec<u8>, FetchError> {
    bounded(url, timeout, exchange(url, Some(body), MAX_RESPONSE_BYTES)).await
}

/// GETs `url` (a CRL); returns the response body of a 200.
pub(crate) async fn get(url: &str, timeout: Duration) -> Result<Vec<u8>, FetchError> {
    bounded(url, timeout, exchange(url, None, MAX_CRL_BYTES)).await
}

async fn bounded(
    url: &str,
    timeout: Duration,
    exchange: impl std::future::Future<Output = Result<Vec<u8>, FetchError>>,
) -> Result<Vec<u8>, FetchError> {
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(FetchError::Timeout {
                url: url.to_owned(),
                timeout,
            })
        })
}

/// One request: a POST of `body` (OCSP), or a GET without.
async fn exchange(url: &str, body: Option<&[u8]>, limit: usize) -> Result<Vec<u8>, FetchError> {
    let uri: Uri = url.parse().map_err(|_| FetchError::Url(url.to_owned()))?;
    let (Some("http"), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Err(FetchError::Url(url.to_owned()));
    };
    let transport = |reason: &dyn std::fmt::Display| FetchError::Transport {
        url: url.to_owned(),
        reason: reason.to_string(),
    };
    let port = uri.port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| transport(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| transport(&e))?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let builder = Request::builder().uri(path).header(header::HOST, authority);
    let request = match body {
        Some(body) => builder
            .method(Method::POST)
            .header(header::CONTENT_TYPE, "application/ocsp-request")
            .header(header::ACCEPT, "application/ocsp-response")
            .body(Full::new(Bytes::copy_from_slice(body))),
        None => builder.method(Method::GET).body(Full::new(Bytes::new())),
    }
    .map_err(|e| transport(&e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| transport(&e))?;
    if response.status() != StatusCode::OK {
        return Err(FetchError::Http {
            url: url.to_owned(),
            status: response.status(),
        });
    }
    let body = Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map_err(|e| transport(&format!("reading the response: {e}")))?;
    Ok(body.to_bytes().to_vec())
}
