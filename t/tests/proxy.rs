//! Proxying behaviour seen from a client: plain HTTP, routing, weighted
//! round-robin over an upstream's nodes, upstream failures as JSON errors,
//! roles, and graceful shutdown.

use std::time::Duration;

use harness::fixtures::{
    curl_http, curl_https, eventually_status, plain_route, start_control_and_data_plane,
    start_stack, walkthrough_ssl,
};
use harness::pki::OpensslPki;
use harness::{free_port, wait_until, EchoServer, Etcd, Gateway};
use serde_json::{json, Value};

fn json_body(out: &harness::CurlOutput) -> Value {
    serde_json::from_str(&out.body).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

#[tokio::test]
async fn plain_http_serves_routes_and_answers_404_json_otherwise() -> harness::Result<()> {
    let (_etcd, gw, echo) = start_stack().await?;
    let admin = gw.admin();
    admin
        .create("routes/1", plain_route("/anything", &echo.node()))
        .await?;
    let out = eventually_status("the route", 200, || {
        curl_http(&gw, "/anything?a=1", &["--data", "ping"])
    })
    .await?;
    let body = json_body(&out);
    assert_eq!(body["method"], "POST");
    assert_eq!(body["uri"], "/anything?a=1");
    assert_eq!(body["body"], "ping");
    assert_eq!(body["headers"]["x-forwarded-proto"], "http", "{body:#}");

    let out = curl_http(&gw, "/nothing-here", &[])?;
    assert_eq!(out.status, 404, "{out:?}");
    assert_eq!(json_body(&out)["error_msg"], "404 Route Not Found");
    Ok(())
}

#[tokio::test]
async fn plain_http_refuses_a_host_that_requires_client_certificates() -> harness::Result<()> {
    let (_etcd, gw, echo) = start_stack().await?;
    let pki = OpensslPki::walkthrough()?;
    let admin = gw.admin();
    admin.create("ssls/1", walkthrough_ssl(&pki)).await?;
    let mut route = plain_route("/anything", &echo.node());
    route["hosts"] = json!(["test.com"]);
    admin
        .create_all([
            ("routes/1", route),
            ("routes/2", plain_route("/open", &echo.node())),
        ])
        .await?;
    eventually_status("the route without hosts", 200, || {
        curl_http(&gw, "/open", &[])
    })
    .await?;

    for (path, host) in [
        ("/anything", "test.com"),
        ("/open", "test.com"),
        ("/anything", "TEST.com:80"),
    ] {
        let out = curl_http(&gw, path, &["-H", &format!("Host: {host}")])?;
        assert_eq!(out.status, 421, "plain HTTP to {host}{path}: {out:?}");
    }
    let out = curl_http(&gw, "/anything", &[])?;
    assert_eq!(
        out.status, 404,
        "a hosts-bound route is not served to other hosts: {out:?}"
    );
    assert_eq!(
        echo.hits(),
        1,
        "only the first /open may reach the upstream"
    );
    Ok(())
}

#[tokio::test]
async fn routing_prefers_exact_then_longest_prefix_then_priority_and_honours_methods(
) -> harness::Result<()> {
    let (_etcd, gw, echo) = start_stack().await?;
    let admin = gw.admin();
    let node = echo.node();
    let tagged = |uri: &str, tag: &str, extra: Value| {
        let mut route = json!({
            "uri": uri,
            "plugins": { "proxy-rewrite": { "headers": { "X-Route": tag } } },
            "upstream": { "nodes": { node.as_str(): 1 }, "type": "roundrobin" }
        });
        if let (Some(route), Some(extra)) = (route.as_object_mut(), extra.as_object()) {
            route.extend(extra.clone());
        }
        route
    };
    for (id, route) in [
        ("prefix", tagged("/api/*", "prefix", json!({}))),
        ("longer", tagged("/api/v1/*", "longer", json!({}))),
        ("exact", tagged("/api/v1/users", "exact", json!({}))),
        ("low", tagged("/p/*", "low", json!({ "priority": 1 }))),
        ("high", tagged("/p/*", "high", json!({ "priority": 10 }))),
        ("post", tagged("/m", "post", json!({ "methods": ["POST"] }))),
        ("off", tagged("/off", "off", json!({ "status": 0 }))),
    ] {
        admin.create(&format!("routes/{id}"), route).await?;
    }
    eventually_status("all routes", 200, || curl_http(&gw, "/m", &["-X", "POST"])).await?;
    for (path, method, want) in [
        ("/api/v1/users", "GET", Some("exact")),
        ("/api/v1/users/7", "GET", Some("longer")),
        ("/api/v2", "GET", Some("prefix")),
        ("/p/x", "GET", Some("high")),
        ("/m", "POST", Some("post")),
        ("/m", "GET", None),
        ("/off", "GET", None),
    ] {
        let out = curl_http(&gw, path, &["-X", method])?;
        match want {
            Some(tag) => {
                assert_eq!(out.status, 200, "{method} {path}: {out:?}");
                assert_eq!(
                    json_body(&out)["headers"]["x-route"],
                    tag,
                    "{method} {path}"
                );
            }
            None => assert_eq!(out.status, 404, "{method} {path}: {out:?}"),
        }
    }
    Ok(())
}

/// 400 requests: two keep-alive runs of 150 over one connection each, and
/// 100 on a new connection each.
const KEEP_ALIVE_RUNS: usize = 2;
const REQUESTS_PER_RUN: usize = 150;
const NEW_CONNECTIONS: usize = 100;

#[tokio::test]
async fn weighted_round_robin_follows_the_node_weights() -> harness::Result<()> {
    let (_etcd, gw, heavy) = start_stack().await?;
    let light = EchoServer::start().await?;
    let route = json!({
        "uri": "/wrr",
        "upstream": {
            "type": "roundrobin",
            "nodes": { heavy.node(): 3, light.node(): 1 }
        }
    });
    gw.admin().create("routes/1", route).await?;
    eventually_status("the weighted route", 200, || curl_http(&gw, "/wrr", &[])).await?;
    let before = (heavy.hits(), light.hits());

    // curl sends every URL of one run over one connection (`-v` shows it).
    let url = format!("http://{}/wrr", gw.http_addr());
    for _ in 0..KEEP_ALIVE_RUNS {
        let mut args = vec![url.as_str(); REQUESTS_PER_RUN];
        args.push("-v");
        let out = harness::curl(&args)?;
        assert_eq!(out.status, 200, "{out:?}");
        // "Re-using existing connection" before curl 8.8, "Reusing existing
        // http: connection" since.
        let reused = out.stderr.matches("using existing").count();
        assert!(
            reused > 0,
            "no request reused the connection: {:#?}",
            out.stderr
                .lines()
                .filter(|l| l.starts_with('*'))
                .collect::<Vec<_>>()
        );
    }
    for _ in 0..NEW_CONNECTIONS {
        let out = curl_http(&gw, "/wrr", &[])?;
        assert_eq!(out.status, 200, "{out:?}");
    }

    let heavy_hits = heavy.hits() - before.0;
    let light_hits = light.hits() - before.1;
    let sent = KEEP_ALIVE_RUNS * REQUESTS_PER_RUN + NEW_CONNECTIONS;
    assert_eq!(
        heavy_hits + light_hits,
        sent,
        "every request reached a node"
    );
    eprintln!("weights 3:1 served {heavy_hits}:{light_hits}");
    assert!(
        heavy_hits > 0 && light_hits > 0,
        "{heavy_hits}:{light_hits}"
    );
    // The worker threads share one schedule (`a a b a`, one atomic counter
    // in the configuration snapshot), so any 400 consecutive picks give
    // exactly 300:100. The margin only covers the schedule restarting,
    // should the route be rebuilt during the run (at most one pick each);
    // it still tells 3:1 from 2:1 (267) and 4:1 (320).
    assert!(
        (281..=319).contains(&heavy_hits),
        "weights 3:1 gave {heavy_hits}:{light_hits} over {sent} requests"
    );
    Ok(())
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_json() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let gw = Gateway::start(&etcd).await?;
    let dead = format!("127.0.0.1:{}", free_port());
    let admin = gw.admin();
    admin
        .create("routes/1", plain_route("/down", &dead))
        .await?;
    let out = eventually_status("the route to a dead upstream", 502, || {
        curl_http(&gw, "/down", &[])
    })
    .await?;
    assert!(json_body(&out)["error_msg"].is_string(), "{out:?}");
    Ok(())
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_json() -> harness::Result<()> {
    let (_etcd, gw, echo) = start_stack().await?;
    let mut route = plain_route("/delay/*", &echo.node());
    route["upstream"]["timeout"] = json!({ "connect": 1, "send": 1, "read": 1 });
    gw.admin().create("routes/1", route).await?;
    eventually_status("a fast request", 200, || curl_http(&gw, "/delay/0", &[])).await?;
    let out = curl_http(&gw, "/delay/3000", &[])?;
    assert_eq!(out.status, 504, "{out:?}");
    assert!(json_body(&out)["error_msg"].is_string(), "{out:?}");
    Ok(())
}

#[tokio::test]
async fn data_plane_serves_what_the_control_plane_stores() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let (control, data) = start_control_and_data_plane(&etcd).await?;
    let echo = EchoServer::start().await?;
    control
        .admin()
        .create("routes/1", plain_route("/anything", &echo.node()))
        .await?;
    eventually_status("the data plane", 200, || curl_http(&data, "/anything", &[])).await?;
    assert!(
        data.admin().get("/apisix/admin/routes").await.is_err(),
        "a data plane has no admin API"
    );
    assert_eq!(
        curl_http(&control, "/anything", &[])?.status,
        0,
        "a control plane has no proxy"
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() -> harness::Result<()> {
    let (_etcd, mut gw, echo) = start_stack().await?;
    gw.admin()
        .create("routes/1", plain_route("/delay/*", &echo.node()))
        .await?;
    eventually_status("the route", 200, || curl_http(&gw, "/delay/0", &[])).await?;

    let url = format!("http://{}/delay/1500", gw.http_addr());
    let in_flight = std::thread::spawn(move || harness::curl(&[&url]));
    wait_until(
        "the slow request to reach the upstream",
        Duration::from_secs(5),
        || {
            let hits = echo.hits();
            async move { hits >= 2 }
        },
    )
    .await?;
    gw.stop().await;
    let out = in_flight.join().expect("curl thread")?;
    assert_eq!(
        out.status, 200,
        "the in-flight request must complete: {out:?}"
    );
    let status = gw.last_exit();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}"
    );
    let http = gw.http_addr();
    assert!(
        curl_http(&gw, "/delay/0", &[])?.status == 0,
        "{http} must be closed after the shutdown"
    );
    Ok(())
}

/// The upstream gets the path as the client sent it, so the gate and the
/// router must not judge a cleaned-up one: `/admin/%2e%2e/public/x` would
/// pass as an exempt `/public/` path while an upstream that does not
/// resolve dot-segments serves `/admin/...`. Such paths are refused first.
#[tokio::test]
async fn dot_segment_paths_are_refused_before_the_gate_and_the_router() -> harness::Result<()> {
    let (_etcd, gw, echo) = start_stack().await?;
    let pki = OpensslPki::walkthrough()?;
    let mut ssl = walkthrough_ssl(&pki);
    ssl["client"]["skip_mtls_uri_regex"] = json!(["^/public/"]);
    let admin = gw.admin();
    admin.create("ssls/1", ssl).await?;
    admin
        .create_all([
            ("routes/1", plain_route("/public/*", &echo.node())),
            ("routes/2", plain_route("/admin/*", &echo.node())),
        ])
        .await?;
    eventually_status("the exempt path", 200, || {
        curl_https(&gw, "test.com", "/public/x", &[])
    })
    .await?;
    let out = curl_https(&gw, "test.com", "/admin/x", &[])?;
    assert_eq!(out.status, 400, "/admin/ needs a certificate: {out:?}");

    let hits = echo.hits();
    let refused = [
        ("/admin/%2e%2e/public/x", "`.` or `..` segment"),
        ("/admin/../public/x", "`.` or `..` segment"),
        ("/admin/.%2E/public/x", "`.` or `..` segment"),
        ("/public/..;/admin/x", "`.` or `..` segment"),
        ("/public/.;x/x", "`.` or `..` segment"),
        ("//public/x", "starts with `//`"),
    ];
    for (path, reason) in refused {
        let out = curl_https(&gw, "test.com", path, &["--path-as-is"])?;
        assert_eq!(out.status, 400, "{path}: {out:?}");
        assert_eq!(
            json_body(&out)["error_msg"],
            format!("invalid request path: {reason}"),
            "{path}"
        );
    }
    assert_eq!(echo.hits(), hits, "a refused path reached the upstream");
    Ok(())
}

/// The `Sec-WebSocket-Accept` answering `key` (RFC 6455 §4.2.2).
fn websocket_accept(key: &str) -> String {
    use base64::Engine as _;
    use sha1::{Digest as _, Sha1};
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let digest = Sha1::digest(format!("{key}{GUID}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// Reads an HTTP/1.1 head (up to the blank line) from `io`.
async fn read_head<R: tokio::io::AsyncRead + Unpin>(io: &mut R) -> harness::Result<String> {
    use tokio::io::AsyncReadExt as _;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte: nothing past the head may be consumed.
    while !head.ends_with(b"\r\n\r\n") {
        if io.read(&mut byte).await? == 0 {
            anyhow::bail!("closed within a head: {:?}", String::from_utf8_lossy(&head));
        }
        head.push(byte[0]);
        anyhow::ensure!(head.len() < 16 * 1024, "head too long");
    }
    Ok(String::from_utf8(head)?)
}

/// The value of header `name` in `head`, if any.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A WebSocket echo upstream on loopback: answers an upgrade request with
/// `101` and the right `Sec-WebSocket-Accept`, then echoes every byte; any
/// other request gets `200 plain`. Returns its `host:port`.
async fn websocket_echo() -> harness::Result<String> {
    use tokio::io::AsyncWriteExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let node = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(head) = read_head(&mut tcp).await else {
                    return;
                };
                let upgrade = header(&head, "upgrade").is_some_and(|u| u == "websocket");
                let Some(key) = header(&head, "sec-websocket-key").filter(|_| upgrade) else {
                    let plain =
                        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nplain";
                    let _ = tcp.write_all(plain.as_bytes()).await;
                    return;
                };
                let switch = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
                    websocket_accept(key)
                );
                if tcp.write_all(switch.as_bytes()).await.is_ok() {
                    let (mut read, mut write) = tcp.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                }
            });
        }
    });
    Ok(node)
}

/// Serves `ws.test` over TLS (`ssls/ws`) with `/ws` (`routes/ws`,
/// `enable_websocket`) on a [`websocket_echo`] upstream; returns the
/// server's CA and the upstream node once `/ws` answers a plain request.
async fn serve_websocket_site(gw: &Gateway) -> harness::Result<(harness::pki::Ca, String)> {
    let ca = harness::pki::Ca::new("WebSocket Test CA");
    let node = websocket_echo().await?;
    let mut ws_route = plain_route("/ws", &node);
    ws_route["enable_websocket"] = json!(true);
    gw.admin()
        .create_all([
            (
                "ssls/ws",
                harness::fixtures::plain_ssl("ws.test", &ca.server("ws.test", &["ws.test"])),
            ),
            ("routes/ws", ws_route),
        ])
        .await?;
    eventually_status("/ws", 200, || curl_https(gw, "ws.test", "/ws", &[])).await?;
    Ok((ca, node))
}

/// Sends a WebSocket handshake for `path` over `io`; returns the answer's head.
async fn websocket_handshake<S>(io: &mut S, path: &str, key: &str) -> harness::Result<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt as _;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: ws.test\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    io.write_all(request.as_bytes()).await?;
    read_head(io).await
}

// Multi-threaded: the upstream serves on this runtime while curl blocks a
// thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_are_spliced_on_routes_that_enable_them() -> harness::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (_etcd, gw, _echo) = start_stack().await?;
    let (ca, node) = serve_websocket_site(&gw).await?;
    gw.admin()
        .create("routes/plain", plain_route("/plain-ws", &node))
        .await?;
    eventually_status("/plain-ws", 200, || {
        curl_https(&gw, "ws.test", "/plain-ws", &[])
    })
    .await?;

    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let connect =
        || harness::tls_setup::connect(gw.https_addr(), "ws.test", &ca.cert_pem, b"http/1.1");
    let mut tls = connect().await?;
    let head = websocket_handshake(&mut tls, "/ws", key).await?;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(header(&head, "upgrade"), Some("websocket"), "{head}");
    assert_eq!(header(&head, "connection"), Some("upgrade"), "{head}");
    assert_eq!(
        header(&head, "sec-websocket-accept"),
        Some(websocket_accept(key).as_str()),
        "{head}"
    );
    for message in [&b"hello"[..], b"\x81\x05world", &[0u8; 4096]] {
        tls.write_all(message).await?;
        let mut echoed = vec![0; message.len()];
        tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut echoed)).await??;
        assert_eq!(echoed, message);
    }
    // The client closes its side: the upstream sees it and closes, and the
    // client's connection ends too.
    // (Sooner than the gateway's 5 s grace for half-closed WebSockets.)
    tls.shutdown().await?;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), tls.read_to_end(&mut rest))
        .await
        .map_err(|_| anyhow::anyhow!("the spliced connection stayed open"))?
        .ok();
    assert!(rest.is_empty(), "{rest:?}");

    // Without `enable_websocket` the upgrade headers never reach the upstream.
    let mut tls = connect().await?;
    let head = websocket_handshake(&mut tls, "/plain-ws", key).await?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(header(&head, "upgrade"), None, "{head}");
    Ok(())
}

/// A WebSocket keeps the slot of the connection it was upgraded from: with
/// `proxy.max_connections: 1`, no other connection is served while it is
/// open, and the slot is free again once it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_counts_under_max_connections() -> harness::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let etcd = Etcd::start().await?;
    let opts = harness::GatewayOptions {
        proxy_yaml: "  max_connections: 1\n".to_owned(),
        ..harness::GatewayOptions::default()
    };
    let gw = Gateway::start_with(&etcd, opts).await?;
    let (ca, _node) = serve_websocket_site(&gw).await?;

    // The site check's connection holds the one slot until the gateway has
    // seen it close: connect once it is free.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut tls = loop {
        match harness::tls_setup::connect(gw.https_addr(), "ws.test", &ca.cert_pem, b"http/1.1")
            .await
        {
            Ok(tls) => break tls,
            Err(err) if tokio::time::Instant::now() >= deadline => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let head = websocket_handshake(&mut tls, "/ws", "dGhlIHNhbXBsZSBub25jZQ==").await?;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tls.write_all(b"ping").await?;
    let mut echoed = [0; 4];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut echoed)).await??;
    assert_eq!(&echoed, b"ping");
    let out = curl_https(&gw, "ws.test", "/ws", &[])?;
    assert_eq!(out.status, 0, "served beside the open WebSocket: {out:?}");

    tls.shutdown().await?;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest))
        .await
        .map_err(|_| anyhow::anyhow!("the WebSocket stayed open"))?
        .ok();
    eventually_status("/ws once the WebSocket closed", 200, || {
        curl_https(&gw, "ws.test", "/ws", &[])
    })
    .await?;
    Ok(())
}
