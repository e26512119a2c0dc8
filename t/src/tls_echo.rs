//! A real HTTPS upstream: rustls, optionally requiring a client certificate,
//! HTTP/1.1 or h2 (by ALPN), echoing who connected.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::pki::Leaf;
use crate::server_thread::ServerThread;

/// How the upstream speaks TLS.
#[derive(Clone, Debug)]
pub struct TlsEchoOptions {
    /// The server certificate (give it the SAN `127.0.0.1`: nodes are
    /// loopback addresses) and its key.
    pub server: Leaf,
    /// When set, a client certificate issued by this CA (PEM) is required
    /// at the handshake.
    pub client_ca: Option<String>,
    /// Offer h2 by ALPN (else only http/1.1).
    pub h2: bool,
}

/// A real HTTPS upstream on a free loopback port. It answers 200 with JSON
/// `{"client_subject": "CN=..." | null, "version": "HTTP/1.1" | "HTTP/2.0",
/// "host": ..., "uri": ...}`. Stopped on drop.
#[derive(Debug)]
pub struct TlsEchoServer {
    server: ServerThread,
    handshakes: Arc<AtomicUsize>,
}

impl TlsEchoServer {
    pub async fn start(opts: TlsEchoOptions) -> crate::Result<TlsEchoServer> {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&opts)?));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&handshakes);
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = ServerThread::spawn("tls-echo", loopback, move |stream| {
            serve_tls(stream, acceptor.clone(), Arc::clone(&counter))
        })?;
        Ok(TlsEchoServer { server, handshakes })
    }

    /// `127.0.0.1:PORT`, as an upstream node.
    pub fn node(&self) -> String {
        self.server.addr().to_string()
    }

    /// TLS handshakes completed so far (a reused pooled connection adds none).
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

fn server_config(opts: &TlsEchoOptions) -> crate::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = CertificateDer::pem_slice_iter(opts.server.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the echo server certificate is not PEM")?;
    let key = PrivateKeyDer::from_pem_slice(opts.server.key_pem.as_bytes())
        .context("the echo server key is not PEM")?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match &opts.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(cert.context("the client CA is not PEM")?)?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = if opts.h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// One connection: the handshake (a refused one, without or with an
/// untrusted client certificate, just ends here), then HTTP/1.1 or h2.
async fn serve_tls(stream: TcpStream, acceptor: TlsAcceptor, handshakes: Arc<AtomicUsize>) {
    let Ok(tls) = acceptor.accept(stream).await else {
        return;
    };
    handshakes.fetch_add(1, Ordering::SeqCst);
    let subject = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[_]>::first)
        .and_then(subject_of);
    let service = service_fn(move |req| echo(req, subject.clone()));
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

fn subject_of(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.subject().to_string())
}

async fn echo(
    req: Request<Incoming>,
    subject: Option<String>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let body = json!({
        "client_subject": subject.map_or(Value::Null, Value::from),
        "version": format!("{:?}", req.version()),
        "host": host,
        "uri": req.uri().path_and_query().map(|p| p.to_string()),
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
