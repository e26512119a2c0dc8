//! The HTTP clients upstream requests go through, one per TLS profile
//! ([`super::pools`]), each with its own pools of keep-alive connections
//! (one per proxy worker thread, keyed by scheme, host and port): plain TCP for
//! `scheme: http`; for `scheme: https`, rustls configured from the
//! upstream's `tls` (client certificate, trust anchors, server name) and
//! offering h2 and http/1.1 by ALPN. Requests are HTTP/1.1 unless the
//! upstream picks h2; over h2 the `:authority` is the node (the pool and the
//! connector work from the request URI) and `Host` carries the `pass_host`
//! value, as over HTTP/1.1.
//!
//! Timeouts, per upstream (nginx `proxy_*_timeout` semantics):
//! * `connect` bounds establishing the connection, TLS handshake included.
//!   The pool is shared while the timeout is not, so it travels with the
//!   request in a task-local the connector reads when it starts connecting
//!   (hyper-util starts connecting on the requesting task; were that to
//!   change, connects would fall back to [`DEFAULT_CONNECT_TIMEOUT`], never
//!   to none);
//! * `read` bounds the wait for the response head once the request is sent,
//!   then every silence between two chunks of the response body
//!   ([`super::ResponseBody`]);
//! * `send` is not enforced yet: hyper does not report when an upstream
//!   stops reading, and the connection's TCP keepalive covers dead peers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::{
    ConfigBuilderExt as _, FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder,
};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use shared::validate::Timeouts;
use thiserror::Error;
use thread_local::ThreadLocal;
use tokio::sync::oneshot;

use super::body::AttemptBody;
use crate::build_error::BuildError;
use crate::reply::BoxError;

/// Used when no per-upstream connect timeout is in scope.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const POOL_MAX_IDLE_PER_HOST: usize = 256;
/// Probes idle-looking upstream connections, so a vanished peer is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

tokio::task_local! {
    static CONNECT_TIMEOUT: Duration;
}

/// Why an upstream request produced no response.
#[derive(Debug, Error)]
pub(crate) enum SendError {
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("no response headers within {0:?}")]
    ReadTimeout(Duration),
    #[error("request failed: {0}")]
    Failed(String),
    /// The upstream's TLS profile could not be built (e.g. its
    /// `tls.client_cert_id` names a missing SSL object): nothing is sent.
    #[error("upstream TLS unavailable: {0}")]
    TlsUnavailable(Arc<BuildError>),
}

impl SendError {
    /// Whether the request never reached the upstream, so another node may
    /// be tried.
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, SendError::ConnectTimeout(_) | SendError::Connect(_))
    }

    pub(crate) fn is_timeout(&self) -> bool {
        matches!(
            self,
            SendError::ConnectTimeout(_) | SendError::ReadTimeout(_)
        )
    }
}

type PooledClient = Client<TimedConnector<HttpsConnector<HttpConnector>>, AttemptBody>;

/// The client of one TLS profile, and its connection pools: one per proxy
/// worker thread (as nginx workers and Envoy workers keep theirs), so a
/// request only ever uses connections its own thread drives, never waking
/// another thread.
pub(crate) struct UpstreamClient {
    connector: TimedConnector<HttpsConnector<HttpConnector>>,
    per_thread: ThreadLocal<PooledClient>,
}

impl UpstreamClient {
    /// For `scheme: http` (an `https://` URI would get the webpki roots and
    /// no client certificate, but targets never send one here).
    pub(crate) fn plain() -> UpstreamClient {
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(default_tls_config())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp_connector());
        UpstreamClient::with_connector(https)
    }

    /// For one `scheme: https` profile: `config` as built from it (no ALPN
    /// yet), `server_name` sent and verified instead of each node's host.
    pub(crate) fn tls(config: ClientConfig, server_name: Option<ServerName<'static>>) -> Self {
        let mut builder = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only();
        if let Some(name) = server_name {
            builder = builder.with_server_name_resolver(FixedServerNameResolver::new(name));
        }
        let https = builder
            .enable_all_versions()
            .wrap_connector(tcp_connector());
        UpstreamClient::with_connector(https)
    }

    fn with_connector(https: HttpsConnector<HttpConnector>) -> UpstreamClient {
        UpstreamClient {
            connector: TimedConnector { inner: https },
            per_thread: ThreadLocal::new(),
        }
    }

    /// This thread's client, made on its first request.
    fn pooled(&self) -> &PooledClient {
        self.per_thread.get_or(|| {
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
                .build(self.connector.clone())
        })
    }

    /// Sends `req` and waits for the response headers.
    ///
    /// The read timeout starts once the request body has been sent whole
    /// (`sent` fires); with nothing to send (`sent` is `None`) the wait gets
    /// `connect + read`, so a slow connect never eats into the read budget.
    pub(crate) async fn send(
        &self,
        req: Request<AttemptBody>,
        timeouts: &Timeouts,
        sent: Option<oneshot::Receiver<()>>,
    ) -> Result<Response<Incoming>, SendError> {
        let response = CONNECT_TIMEOUT.scope(timeouts.connect, self.pooled().request(req));
        tokio::pin!(response);
        let budget = match sent {
            None => timeouts.connect + timeouts.read,
            Some(sent) => {
                tokio::select! {
                    result = &mut response => return result.map_err(classify),
                    // Sent whole, or the body was dropped mid-way: either way
                    // only the upstream's answer is awaited now.
                    _ = sent => timeouts.read,
                }
            }
        };
        match tokio::time::timeout(budget, response).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(SendError::ReadTimeout(budget)),
        }
    }
}

fn tcp_connector() -> HttpConnector {
    let mut tcp = HttpConnector::new();
    // The TLS layer above handles https:// URIs.
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_keepalive(Some(TCP_KEEPALIVE));
    tcp
}

fn default_tls_config() -> ClientConfig {
    ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        // aws-lc-rs implements every safe default version: cannot fail.
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_webpki_roots()
        .with_no_client_auth()
}

fn classify(err: hyper_util::client::legacy::Error) -> SendError {
    if let Some(timeout) = find_source::<ConnectTimedOut>(&err) {
        return SendError::ConnectTimeout(timeout.0);
    }
    let detail = error_chain(&err);
    if err.is_connect() {
        SendError::Connect(detail)
    } else {
        SendError::Failed(detail)
    }
}

fn find_source<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// `outer: inner: innermost`, skipping the repetitions hyper's wrappers add.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut current = err.source();
    while let Some(source) = current {
        let text = source.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = source.source();
    }
    out
}

/// Connecting took longer than the upstream's connect timeout.
#[derive(Debug, Error)]
#[error("connect timed out after {0:?}")]
struct ConnectTimedOut(Duration);

/// A connector (TCP, then TLS for `https`) bounded by the connect timeout
/// in scope.
#[derive(Clone)]
pub(crate) struct TimedConnector<C> {
    inner: C,
}

type Connecting<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

impl<C> tower_service::Service<Uri> for TimedConnector<C>
where
    C: tower_service::Service<Uri>,
    C::Response: Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Connecting<C::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Connecting<C::Response> {
        let limit = CONNECT_TIMEOUT
            .try_with(|t| *t)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let connecting = self.inner.call(dst);
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(ConnectTimedOut(limit).into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        connect: Duration::from_secs(5),
        send: Duration::from_secs(5),
        read: Duration::from_secs(5),
    };

    /// A keep-alive HTTP/1.1 upstream answering `200` with an empty body to
    /// every request; counts the connections it accepted.
    async fn counting_upstream() -> (Uri, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                        head.extend_from_slice(&buf[..n]);
                        if head.ends_with(b"\r\n\r\n") {
                            head.clear();
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                            if tcp.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (uri, accepted)
    }

    async fn get(client: &UpstreamClient, uri: &Uri) {
        let req = Request::get(uri.clone())
            .body(AttemptBody::empty())
            .unwrap();
        let response = client.send(req, &TIMEOUTS, None).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
    }

    #[tokio::test]
    async fn each_thread_reuses_its_own_connections_only() {
        let (uri, accepted) = counting_upstream().await;
        let client = Arc::new(UpstreamClient::plain());

        get(&client, &uri).await;
        // Let the connection go back to this thread's pool.
        tokio::time::sleep(Duration::from_millis(100)).await;
        get(&client, &uri).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "kept alive and reused");

        // Another worker thread, while this one's connection sits idle in
        // its pool, connects on its own.
        let (other, target) = (Arc::clone(&client), uri.clone());
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(get(&other, &target));
        })
        .await
        .unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "one pool per thread");
    }
}
