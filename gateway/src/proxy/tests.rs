//! The proxy end to end, in-process: a real hyper upstream and a real hyper
//! server running [`Proxy::handle`], both on loopback, and a real client.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{stream, StreamExt as _};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use shared::resource::{PassHost, Scheme};
use shared::validate::{
    PluginConfigs, Timeouts, UpstreamNode, UpstreamRef, UriPattern, ValidRoute, ValidUpstream,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;
use crate::reply::BoxError;
use crate::router::RouteTable;
use crate::tls::SniTable;

/// Fails a hung test instead of hanging the suite.
const LIMIT: Duration = Duration::from_secs(20);
const CHUNK: usize = 64 * 1024;

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The upstream: `/slow` answers after 3 s, `/stall` sends one chunk and
/// goes quiet, `/download` streams 32 MiB, `/echo-body` streams the request
/// body back; anything else answers with a JSON echo of the request head.
async fn upstream_service(
    req: http::Request<hyper::body::Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let response = match req.uri().path() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Response::new(full("late"))
        }
        "/stall" => {
            let chunks = stream::once(async {
                Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"first")))
            })
            .chain(stream::once(async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(Frame::data(Bytes::from_static(b"never")))
            }));
            Response::new(BodyExt::boxed(StreamBody::new(chunks)))
        }
        "/download" => {
            let chunks = stream::iter(
                (0..512).map(|i| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![i as u8; CHUNK])))),
            );
            Response::new(BodyExt::boxed(StreamBody::new(chunks)))
        }
        "/echo-body" => Response::new(req.into_body().map_err(Into::into).boxed()),
        _ => {
            let headers: BTreeMap<String, Vec<String>> = req
                .headers()
                .keys()
                .map(|name| {
                    let values = req
                        .headers()
                        .get_all(name)
                        .iter()
                        .map(|v| v.to_str().unwrap().to_owned())
                        .collect();
                    (name.to_string(), values)
                })
                .collect();
            let echo = json!({"method": req.method().as_str(), "uri": req.uri().to_string(), "headers": headers});
            Response::new(full(&echo.to_string()))
        }
    };
    Ok(response)
}

fn full(text: &str) -> ProxyBody {
    http_body_util::Full::new(Bytes::from(text.to_owned()))
        .map_err(|never| match never {})
        .boxed()
}

async fn spawn_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(upstream_service)),
            );
        }
    });
    addr
}

/// Serves `proxy` on loopback as the listener does (plain HTTP/1.1, or
/// HTTP/2 with prior knowledge).
async fn spawn_proxy(proxy: Arc<Proxy>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, remote_addr) = listener.accept().await.unwrap();
            let conn = ConnInfo::new(remote_addr, addr, None);
            let proxy = Arc::clone(&proxy);
            let service = service_fn(move |req| {
                let proxy = Arc::clone(&proxy);
                let conn = conn.clone();
                async move { Ok::<_, Infallible>(proxy.handle(req, &conn).await) }
            });
            tokio::spawn(async move {
                let server = auto::Builder::new(TokioExecutor::new());
                let _ = server.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

fn upstream_to(ports: &[u16], read: Duration, retries: u32) -> ValidUpstream {
    ValidUpstream {
        id: None,
        nodes: ports
            .iter()
            .map(|&port| UpstreamNode {
                host: "127.0.0.1".to_owned(),
                port,
                weight: 1,
            })
            .collect(),
        scheme: Scheme::Http,
        pass_host: PassHost::Pass,
        upstream_host: None,
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            send: Duration::from_secs(2),
            read,
        },
        retries,
        tls: None,
    }
}

fn route(id: &str, uri: UriPattern, upstream: ValidUpstream, plugins: Value) -> Arc<ValidRoute> {
    let plugins = match plugins {
        Value::Object(map) => PluginConfigs::validate(&map.into_iter().collect()).unwrap(),
        _ => PluginConfigs::default(),
    };
    Arc::new(ValidRoute {
        id: id.to_owned(),
        enabled: true,
        uris: vec![uri],
        hosts: Vec::new(),
        methods: Vec::new(),
        priority: 0,
        enable_websocket: false,
        upstream: UpstreamRef::Inline(Arc::new(upstream)),
        plugins,
    })
}

fn snapshot(routes: &[Arc<ValidRoute>]) -> Snapshot {
    Snapshot {
        revision: 1,
        tls: Arc::new(SniTable::build(&[], None, None)),
        routes: RouteTable::build(routes, &BTreeMap::new()),
    }
}

/// A gateway with a route per behaviour under test.
struct Fixture {
    proxy: SocketAddr,
    snapshot: Arc<ArcSwap<Snapshot>>,
    upstream: SocketAddr,
}

impl Fixture {
    async fn start() -> Fixture {
        let upstream = spawn_upstream().await;
        let up = upstream.port();
        let closed = closed_port().await;
        let second = Duration::from_secs(1);
        let routes = [
            route(
                "echo",
                UriPattern::Prefix("/echo".into()),
                upstream_to(&[up], second * 10, 0),
                json!({"proxy-rewrite": {"headers": {"X-Client": "$remote_addr $uri"}}}),
            ),
            route(
                "closed",
                UriPattern::Exact("/closed".into()),
                upstream_to(&[closed], second, 0),
                Value::Null,
            ),
            route(
                "retry",
                UriPattern::Exact("/retry".into()),
                upstream_to(&[closed, up], second, 1),
                Value::Null,
            ),
            route(
                "slow",
                UriPattern::Exact("/slow".into()),
                upstream_to(&[up], Duration::from_millis(300), 0),
                Value::Null,
            ),
            route(
                "stall",
                UriPattern::Exact("/stall".into()),
                upstream_to(&[up], Duration::from_millis(300), 0),
                Value::Null,
            ),
            route(
                "download",
                UriPattern::Exact("/download".into()),
                upstream_to(&[up], second * 10, 0),
                Value::Null,
            ),
            route(
                "echo-body",
                UriPattern::Exact("/echo-body".into()),
                upstream_to(&[up], second * 10, 0),
                Value::Null,
            ),
        ];
        let snapshot = Arc::new(ArcSwap::from_pointee(snapshot(&routes)));
        let proxy = spawn_proxy(Arc::new(Proxy::new(Arc::clone(&snapshot)))).await;
        Fixture {
            proxy,
            snapshot,
            upstream,
        }
    }

    /// One client connection (kept alive across requests).
    async fn connect(&self) -> SendRequest<TestBody> {
        let stream = TcpStream::connect(self.proxy).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }
}

fn get(path: &str) -> http::Request<TestBody> {
    http::Request::get(path)
        .header("host", "gateway.test:9080")
        .body(Empty::new().boxed())
        .unwrap()
}

async fn send(
    client: &mut SendRequest<TestBody>,
    req: http::Request<TestBody>,
) -> (StatusCode, Bytes) {
    tokio::time::timeout(LIMIT, async {
        let response = client.send_request(req).await.unwrap();
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    })
    .await
    .expect("the proxy answered in time")
}

fn error_msg(body: &[u8]) -> String {
    let body: Value = serde_json::from_slice(body).unwrap();
    body["error_msg"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn passes_through_with_forwarding_headers() {
    let fixture = Fixture::start().await;
    let mut client = fixture.connect().await;
    let mut req = get("/echo/a%2Fb?x=1");
    req.headers_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    req.headers_mut()
        .insert("connection", "keep-alive, x-hop".parse().unwrap());
    req.headers_mut().insert("x-hop", "1".parse().unwrap());
    let (status, body) = send(&mut client, req).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let echo: Value = serde_json::from_slice(&body).unwrap();
    let header = |name: &str| echo["headers"][name][0].as_str().map(str::to_owned);
    assert_eq!(
        echo["uri"], "/echo/a%2Fb?x=1",
        "the request line is passed on as sent"
    );
    assert_eq!(header("host").as_deref(), Some("gateway.test:9080"));
    assert_eq!(
        header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        header("x-forwarded-host").as_deref(),
        Some("gateway.test:9080")
    );
    assert_eq!(
        header("x-client").as_deref(),
        Some("127.0.0.1 /echo/a/b"),
        "proxy-rewrite ran"
    );
    assert_eq!(
        header("x-hop"),
        None,
        "headers named in Connection are hop-by-hop"
    );
}

#[tokio::test]
async fn unmatched_paths_get_404() {
    let fixture = Fixture::start().await;
    let mut client = fixture.connect().await;
    let (status, body) = send(&mut client, get("/nothing/here")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_msg(&body), "404 Route Not Found");
}

#[tokio::test]
async fn refused_connections_get_502_and_retries_find_another_node() {
    let fixture = Fixture::start().await;
    let mut client = fixture.connect().await;
    let (status, body) = send(&mut client, get("/closed")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(error_msg(&body), "failed to connect to upstream");
    for _ in 0..4 {
        let (status, _) = send(&mut client, get("/retry")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the closed node is retried on the live one"
        );
    }
}

#[tokio::test]
async fn slow_upstreams_get_504() {
    let fixture = Fixture::start().await;
    let mut client = fixture.connect().await;
    let started = Instant::now();
    let (status, body) = send(&mut client, get("/slow")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(error_msg(&body), "upstream timed out");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered before the upstream did"
    );
}

#[tokio::test]
async fn a_silent_response_body_is_cut_off() {
    let fixture = Fixture::start().await;
    let mut client = fixture.connect().await;
    let response = client.send_request(get("/stall")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let started = Instant::now();
    let body = tokio::time::timeout(LIMIT, response.into_body().collect())
        .await
        .unwrap();
    assert!(
        body.is_err(),
        "the body ends in an error, not silently truncated"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn large_downloads_stream_through() {
    let fixture = Fixture::start().await;
    let mut client = fixture.connect().await;
    let response = client.send_request(get("/download")).await.unwrap();
    let mut body = response.into_body();
    let mut received = 0usize;
    let mut expected_byte = 0u8;
    while let Some(frame) = tokio::time::timeout(LIMIT, body.frame()).await.unwrap() {
        if let Ok(data) = frame.unwrap().into_data() {
            assert!(data
                .iter()
                .all(|&b| b == expected_byte || b == expected_byte.wrapping_add(1)));
            expected_byte = data[data.len() - 1];
            received += data.len();
        }
    }
    assert_eq!(received, 512 * CHUNK);
}

/// Each chunk is sent only after the previous one came back through the
/// proxy and the upstream: a proxy that buffered the request body (or the
/// response body) would deadlock here.
#[tokio::test]
async fn request_and_response_bodies_stream_chunk_by_chunk() {
    let fixture = Fixture::start().await;
    let mut client = fixture.connect().await;
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let chunks = stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    let req = http::Request::post("/echo-body")
        .header("host", "gateway.test")
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .unwrap();
    tx.send(Bytes::from(vec![0u8; CHUNK])).await.unwrap();
    let response = tokio::time::timeout(LIMIT, client.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut echoed = 0usize;
    for round in 1..=64u8 {
        let mut this_round = 0;
        while this_round < CHUNK {
            let frame = tokio::time::timeout(LIMIT, body.frame())
                .await
                .expect("echo arrived")
                .unwrap()
                .unwrap();
            this_round += frame.into_data().map_or(0, |data| data.len());
        }
        echoed += this_round;
        if round < 64 {
            tx.send(Bytes::from(vec![round; CHUNK])).await.unwrap();
        }
    }
    drop(tx);
    while let Some(frame) = tokio::time::timeout(LIMIT, body.frame()).await.unwrap() {
        echoed += frame.unwrap().into_data().map_or(0, |data| data.len());
    }
    assert_eq!(echoed, 64 * CHUNK);
}

#[tokio::test]
async fn route_changes_reach_open_connections() {
    let fixture = Fixture::start().await;
    let mut client = fixture.connect().await;
    assert_eq!(
        send(&mut client, get("/new")).await.0,
        StatusCode::NOT_FOUND
    );
    let routes = [route(
        "new",
        UriPattern::Exact("/new".into()),
        upstream_to(&[fixture.upstream.port()], Duration::from_secs(5), 0),
        Value::Null,
    )];
    fixture.snapshot.store(Arc::new(snapshot(&routes)));
    assert_eq!(
        send(&mut client, get("/new")).await.0,
        StatusCode::OK,
        "same connection, new route"
    );
    assert_eq!(
        send(&mut client, get("/echo/x")).await.0,
        StatusCode::NOT_FOUND,
        "old route gone"
    );
}

#[tokio::test]
async fn broken_routes_answer_503() {
    let fixture = Fixture::start().await;
    let mut broken = route(
        "broken",
        UriPattern::Prefix("/".into()),
        upstream_to(&[fixture.upstream.port()], Duration::from_secs(5), 0),
        json!({}),
    );
    Arc::get_mut(&mut broken).unwrap().upstream = UpstreamRef::Id("gone".into());
    let routes = [broken];
    fixture.snapshot.store(Arc::new(snapshot(&routes)));
    let mut client = fixture.connect().await;
    let (status, body) = send(&mut client, get("/anything")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_msg(&body), "the route is misconfigured");
    let mut req = get("/%ff");
    *req.method_mut() = Method::GET;
    assert_eq!(
        send(&mut client, req).await.0,
        StatusCode::BAD_REQUEST,
        "undecodable path"
    );
}

#[tokio::test]
async fn http2_clients_reach_http1_upstreams() {
    let fixture = Fixture::start().await;
    let stream = TcpStream::connect(fixture.proxy).await.unwrap();
    let (mut client, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://gateway.test:9080/echo/h2?q=1")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("te", "trailers")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = tokio::time::timeout(LIMIT, client.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["uri"], "/echo/h2?q=1");
    assert_eq!(
        echo["headers"]["host"][0], "gateway.test:9080",
        ":authority becomes Host"
    );
    assert_eq!(echo["headers"]["x-forwarded-host"][0], "gateway.test:9080");
    assert_eq!(echo["headers"]["cookie"], json!(["a=1; b=2"]));
    assert!(echo["headers"].get("te").is_none());
}

#[tokio::test]
async fn dot_segment_paths_are_refused_with_the_reason() {
    let fixture = Fixture::start().await;
    let mut client = fixture.connect().await;
    for path in [
        "/echo/../echo",
        "/echo/%2e%2e/echo",
        "/echo/.%2E/echo",
        "/echo/..;/echo",
        "/echo/./x",
    ] {
        let (status, body) = send(&mut client, get(path)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body:?}");
        assert_eq!(
            error_msg(&body),
            "invalid request path: `.` or `..` segment",
            "{path}"
        );
    }
}

#[tokio::test]
async fn client_cert_headers_are_removed_on_routes_without_forward_client_cert() {
    let fixture = Fixture::start().await;
    let mut client = fixture.connect().await;
    let mut req = get("/echo/x");
    for (name, value) in [
        ("x-forwarded-client-cert", "Hash=00;Subject=\"CN=admin\""),
        ("client-cert", ":AAAA:"),
        ("client-cert-chain", ":AAAA:"),
        ("x-kept", "yes"),
    ] {
        req.headers_mut().insert(name, value.parse().unwrap());
    }
    let (status, body) = send(&mut client, req).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let echo: Value = serde_json::from_slice(&body).unwrap();
    for name in [
        "x-forwarded-client-cert",
        "client-cert",
        "client-cert-chain",
    ] {
        assert!(echo["headers"][name].is_null(), "{name}: {echo:#}");
    }
    assert_eq!(echo["headers"]["x-kept"][0], "yes");
}

fn request_parts(version: http::Version, uri: &str, hosts: &[&str]) -> Parts {
    let mut builder = http::Request::builder().version(version).uri(uri);
    for host in hosts {
        builder = builder.header(HOST, *host);
    }
    builder.body(()).expect("request").into_parts().0
}

#[test]
fn one_host_header_at_most() {
    use http::Version;
    let host = |version, uri, hosts: &[&str]| {
        host_header(&request_parts(version, uri, hosts))
            .map(|h| h.map(|h| h.to_str().unwrap().to_owned()))
    };
    assert_eq!(
        host(Version::HTTP_11, "/", &["a.test"]).unwrap().as_deref(),
        Some("a.test")
    );
    assert!(matches!(
        host(Version::HTTP_11, "/", &["a.test", "b.test"]),
        Err(ProxyError::MultipleHosts)
    ));
    assert!(matches!(
        host(Version::HTTP_11, "/", &["a.test", "a.test"]),
        Err(ProxyError::MultipleHosts)
    ));
    // HTTP/1.1 absolute-form: the target's authority wins.
    let absolute = host(Version::HTTP_11, "http://a.test/", &["b.test"]).unwrap();
    assert_eq!(absolute.as_deref(), Some("a.test"));
}

#[test]
fn http2_authority_and_host_must_agree() {
    use http::Version;
    let host = |hosts: &[&str]| {
        host_header(&request_parts(
            Version::HTTP_2,
            "https://a.test:8443/",
            hosts,
        ))
        .map(|h| h.map(|h| h.to_str().unwrap().to_owned()))
    };
    assert_eq!(host(&[]).unwrap().as_deref(), Some("a.test:8443"));
    assert_eq!(
        host(&["A.TEST:8443"]).unwrap().as_deref(),
        Some("a.test:8443")
    );
    for other in ["b.test:8443", "a.test", "a.test:9443"] {
        assert!(
            matches!(host(&[other]), Err(ProxyError::AuthorityMismatch { .. })),
            "{other}"
        );
    }
}
