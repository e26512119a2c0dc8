//! Hostile clients: silent and slow TLS handshakes, garbage and odd
//! ClientHellos, slow and oversized HTTP headers, idle HTTP/2 connections,
//! HTTP/2 rapid reset, more
//! connections than `proxy.max_connections`, and a rolling restart on the
//! same ports. In every case the gateway stays up and keeps serving others.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::fixtures::{
    curl_http, curl_https, eventually_status, plain_route, serve_plain_test_com,
    PROPAGATION_TIMEOUT,
};
use harness::pki::Ca;
use harness::{gateway_bin, wait_until, EchoServer, Etcd, Gateway, GatewayOptions};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short limits, so that the tests measure them quickly.
const PROXY_YAML: &str = "  timeouts: {handshake: 1, header_read: 1}\n";

/// etcd, an echo upstream, and a gateway serving `test.com` (TLS, no client
/// certificate) and `/anything` on both listeners.
struct Site {
    gw: Gateway,
    echo: EchoServer,
    _etcd: Etcd,
}

impl Site {
    async fn start(proxy_yaml: &str) -> harness::Result<Site> {
        let etcd = Etcd::start().await?;
        let opts = GatewayOptions {
            status: true,
            proxy_yaml: proxy_yaml.to_owned(),
            ..GatewayOptions::default()
        };
        let gw = Gateway::start_with(&etcd, opts).await?;
        let echo = EchoServer::start().await?;
        let server = Ca::new("Hostile CA").server("test.com", &["test.com"]);
        serve_plain_test_com(&gw, &server, &echo).await?;
        Ok(Site {
            gw,
            echo,
            _etcd: etcd,
        })
    }

    /// The gateway runs and serves a well-behaved client.
    async fn assert_serving(&self, after: &str) -> harness::Result<()> {
        let out = curl_https(&self.gw, "test.com", "/anything", &[])?;
        assert_eq!(out.status, 200, "after {after}: {out:?}");
        assert_eq!(self.gw.status_code("/healthz").await?, 200, "after {after}");
        Ok(())
    }

    async fn rss_bytes(&self) -> harness::Result<u64> {
        let status = self.gw.status().await?;
        status["process"]["rss_bytes"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("no process.rss_bytes in {status}"))
    }
}

/// Reads until the server closes the connection (or resets it); returns what
/// it sent and when it closed. Fails if it is still open after `limit`.
async fn until_closed(
    stream: &mut TcpStream,
    limit: Duration,
) -> harness::Result<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Ok((received, started.elapsed())),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => anyhow::bail!("the connection is still open after {limit:?}"),
        }
    }
}

/// A TLS 1.3 ClientHello (also offering TLS 1.2) with `sni` as its
/// server_name host name, byte for byte, so that names no TLS library would
/// send can be sent.
fn client_hello(sni: &[u8]) -> Vec<u8> {
    fn u16_len(n: usize) -> [u8; 2] {
        u16::try_from(n).expect("fits in u16").to_be_bytes()
    }
    fn extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
        out.extend(kind.to_be_bytes());
        out.extend(u16_len(data.len()));
        out.extend(data);
    }
    let mut extensions = Vec::new();
    let mut names = vec![0u8]; // host_name
    names.extend(u16_len(sni.len()));
    names.extend(sni);
    let mut server_name = u16_len(names.len()).to_vec();
    server_name.extend(names);
    extension(&mut extensions, 0x0000, &server_name);
    extension(&mut extensions, 0x000a, &[0, 2, 0x00, 0x1d]); // supported_groups: x25519
    extension(&mut extensions, 0x000b, &[1, 0]); // ec_point_formats: uncompressed
                                                 // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    extension(
        &mut extensions,
        0x000d,
        &[0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
    );
    extension(&mut extensions, 0x002b, &[4, 0x03, 0x04, 0x03, 0x03]); // supported_versions
                                                                      // key_share: x25519 with the curve's base point, a valid public key.
    let mut key_share = vec![0, 36, 0x00, 0x1d, 0, 32, 9];
    key_share.extend([0u8; 31]);
    extension(&mut extensions, 0x0033, &key_share);

    let mut hello = vec![0x03, 0x03]; // legacy_version
    hello.extend([0x42; 32]); // random
    hello.push(32);
    hello.extend([0x17; 32]); // legacy_session_id
    let suites = [0x13, 0x01, 0x13, 0x02, 0xc0, 0x2b, 0xc0, 0x2f];
    hello.extend(u16_len(suites.len()));
    hello.extend(suites);
    hello.extend([1, 0]); // compression: null
    hello.extend(u16_len(extensions.len()));
    hello.extend(extensions);

    let mut handshake = vec![1]; // client_hello
    handshake.extend(&u32::try_from(hello.len()).expect("fits").to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(u16_len(handshake.len()));
    record.extend(handshake);
    record
}

#[tokio::test]
async fn silent_and_stalled_tls_handshakes_are_cut_while_others_are_served() -> harness::Result<()>
{
    let site = Site::start(PROXY_YAML).await?;
    let addr = site.gw.https_addr();
    let opened = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        stalled.push(TcpStream::connect(addr).await?);
    }
    let mut partial = TcpStream::connect(addr).await?;
    partial.write_all(&client_hello(b"test.com")[..40]).await?;
    stalled.push(partial);

    // Meanwhile a real client is served.
    site.assert_serving("20 silent connections and a partial ClientHello")
        .await?;

    let mut closed_at = Vec::new();
    for stream in &mut stalled {
        until_closed(stream, Duration::from_secs(10)).await?;
        closed_at.push(opened.elapsed());
    }
    let last = closed_at.iter().max().copied().unwrap_or_default();
    let partial = closed_at.last().copied().unwrap_or_default();
    eprintln!("handshake timeout 1 s: 20 silent connections and 1 partial ClientHello all closed within {last:?} of opening (partial: {partial:?})");
    assert!(
        last >= Duration::from_millis(900),
        "not before the timeout: {last:?}"
    );
    assert!(last < Duration::from_secs(4), "closed after {last:?}");
    site.assert_serving("the stalled handshakes").await
}

#[tokio::test]
async fn garbage_and_odd_client_hellos_are_refused_cleanly() -> harness::Result<()> {
    let site = Site::start(PROXY_YAML).await?;
    let addr = site.gw.https_addr();

    // The crafted ClientHello is sound: with a served name, the gateway answers it.
    let mut sane = TcpStream::connect(addr).await?;
    sane.write_all(&client_hello(b"test.com")).await?;
    let mut first = [0u8; 1];
    sane.read_exact(&mut first).await?;
    assert_eq!(
        first[0], 0x16,
        "a TLS handshake record (ServerHello) answers a sound ClientHello"
    );
    drop(sane);

    let mut garbage = vec![0u8; 4096];
    let mut x: u32 = 0x2545_f491;
    for byte in &mut garbage {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = x.to_le_bytes()[0];
    }
    let long_name = vec![b'a'; 1024];
    let long_labels = vec!["a".repeat(63); 16].join(".").into_bytes();
    let cases: [(&str, Vec<u8>); 5] = [
        ("4 KiB of garbage", garbage),
        (
            "plain HTTP on the TLS port",
            b"GET / HTTP/1.1\r\nHost: test.com\r\n\r\n".to_vec(),
        ),
        ("a 1 KiB SNI", client_hello(&long_name)),
        ("a 1 KiB SNI of DNS labels", client_hello(&long_labels)),
        (
            "a non-UTF-8 SNI",
            client_hello(b"\xff\xfe\xc3\x28.test.com"),
        ),
    ];
    for (what, bytes) in cases {
        let mut stream = TcpStream::connect(addr).await?;
        // The gateway may close before reading everything; that is fine.
        let _ = stream.write_all(&bytes).await;
        let (answer, after) = until_closed(&mut stream, Duration::from_secs(5)).await?;
        let kind = match answer.first() {
            Some(0x15) => "a TLS alert",
            Some(_) => "other bytes",
            None => "nothing",
        };
        eprintln!(
            "{what}: closed after {after:?}, answered with {kind} ({} bytes)",
            answer.len()
        );
        assert!(
            after < Duration::from_secs(3),
            "{what}: closed after {after:?}"
        );
        assert_ne!(
            answer.first(),
            Some(&0x16),
            "{what}: no handshake may proceed"
        );
        site.assert_serving(what).await?;
    }
    Ok(())
}

#[tokio::test]
async fn slow_http_headers_are_cut_off() -> harness::Result<()> {
    let site = Site::start(PROXY_YAML).await?;
    let addr = site.gw.http_addr();

    let mut silent = TcpStream::connect(addr).await?;
    let mut dribbling = TcpStream::connect(addr).await?;
    dribbling
        .write_all(b"GET /anything HTTP/1.1\r\nHost: x\r\n")
        .await?;
    let dribble = tokio::spawn(async move {
        // One header byte every 100 ms: never a complete header block.
        let started = Instant::now();
        while dribbling.write_all(b"X").await.is_ok() && started.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    });

    site.assert_serving("a slow-headers client").await?;
    let (_, silent_after) = until_closed(&mut silent, Duration::from_secs(10)).await?;
    let dribbled_for = dribble.await?;
    eprintln!("header_read 1 s: silent connection closed after {silent_after:?}, dribbling client cut after {dribbled_for:?}");
    assert!(silent_after < Duration::from_secs(4), "{silent_after:?}");
    assert!(
        dribbled_for < Duration::from_secs(5),
        "trickling bytes must not extend the deadline: {dribbled_for:?}"
    );
    site.assert_serving("slow headers").await
}

#[tokio::test]
async fn oversized_headers_get_431_and_a_flood_is_cut() -> harness::Result<()> {
    let site = Site::start(PROXY_YAML).await?;
    let addr = site.gw.http_addr();
    let rss_before = site.rss_bytes().await?;

    // One 100 KiB header.
    let mut stream = TcpStream::connect(addr).await?;
    let big = format!(
        "GET /anything HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(100 * 1024)
    );
    let _ = stream.write_all(big.as_bytes()).await;
    let (answer, _) = until_closed(&mut stream, Duration::from_secs(5)).await?;
    let head = String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned();
    assert_eq!(head, "HTTP/1.1 431", "a 100 KiB header");

    // 200 small headers (the limit is 100 fields).
    let fields: String = (0..200).map(|i| format!("X-F{i}: v\r\n")).collect();
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET /anything HTTP/1.1\r\nHost: x\r\n{fields}\r\n").as_bytes())
        .await?;
    let (answer, _) = until_closed(&mut stream, Duration::from_secs(5)).await?;
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "200 header fields: {:?}",
        String::from_utf8_lossy(&answer)
    );

    // The same through curl over TLS, HTTP/1.1 and HTTP/2.
    let header = format!("X-Big: {}", "c".repeat(70 * 1024));
    let h1 = curl_https(
        &site.gw,
        "test.com",
        "/anything",
        &["--http1.1", "-H", &header],
    )?;
    assert_eq!(h1.status, 431, "{h1:?}");
    let h2 = h2_status(site.gw.http_addr(), &[("x-big", &"d".repeat(70 * 1024))]).await?;
    eprintln!("70 KiB header: HTTP/1.1 -> {}, HTTP/2 -> {h2}", h1.status);
    assert_eq!(h2, "431", "HTTP/2 refuses the header list too");

    // A 10 MiB header block, streamed as fast as the gateway takes it.
    let mut stream = TcpStream::connect(addr).await?;
    let started = Instant::now();
    let line = format!("X-Flood: {}\r\n", "f".repeat(1000));
    let mut sent = stream
        .write_all(b"GET /anything HTTP/1.1\r\nHost: x\r\n")
        .await
        .map(|()| 0usize);
    while let Ok(total) = sent {
        if total >= 10 * 1024 * 1024 {
            break;
        }
        sent = stream
            .write_all(line.as_bytes())
            .await
            .map(|()| total + line.len());
    }
    let accepted = sent
        .as_ref()
        .map_or_else(|e| e.to_string(), |n| format!("all {n} bytes written"));
    let outcome = until_closed(&mut stream, Duration::from_secs(10)).await;
    eprintln!(
        "10 MiB header block: cut after {:?} ({accepted}); answer: {:?}",
        started.elapsed(),
        outcome
            .as_ref()
            .map(|(a, _)| String::from_utf8_lossy(&a[..a.len().min(12)]).into_owned())
    );
    outcome?;

    site.assert_serving("oversized headers").await?;
    assert_memory_bounded(rss_before, site.rss_bytes().await?);
    Ok(())
}

/// The gateway's resident memory grew by less than 64 MiB.
fn assert_memory_bounded(rss_before: u64, rss_after: u64) {
    let grown = rss_after.saturating_sub(rss_before);
    eprintln!(
        "RSS before {} KiB, after {} KiB (+{} KiB)",
        rss_before / 1024,
        rss_after / 1024,
        grown / 1024
    );
    assert!(
        grown < 64 * 1024 * 1024,
        "memory must stay bounded: +{grown} bytes"
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed() -> harness::Result<()> {
    let site = Site::start(PROXY_YAML).await?;
    let tcp = TcpStream::connect(site.gw.http_addr()).await?;
    let (client, connection) = h2::client::handshake(tcp).await?;
    let driver = tokio::spawn(connection);
    let mut client = client.ready().await?;
    let request = http::Request::get("http://test.com/anything").body(())?;
    let (response, _) = client.send_request(request, true)?;
    let response = tokio::time::timeout(Duration::from_secs(5), response).await??;
    assert_eq!(response.status(), 200);
    drop(response);

    // header_read is 1 s: no stream started for a whole second (counted
    // from the last one's start, so at most 2 s from here), then GOAWAY and
    // the close, which ends the client's connection task.
    let idle_since = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), driver).await;
    let after = idle_since.elapsed();
    eprintln!("idle HTTP/2 connection closed after {after:?}: {ended:?}");
    assert!(ended.is_ok(), "still open after {after:?}");
    assert!(
        after >= Duration::from_millis(900),
        "closed too early: {after:?}"
    );
    site.assert_serving("an idle HTTP/2 connection").await
}

/// The status line of the raw HTTP/1.1 `request`'s answer.
async fn raw_status_line(addr: SocketAddr, request: &str) -> harness::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let (received, _) = until_closed(&mut stream, Duration::from_secs(5)).await?;
    let text = String::from_utf8_lossy(&received);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn two_host_headers_get_400() -> harness::Result<()> {
    let site = Site::start(PROXY_YAML).await?;
    let hits = site.echo.hits();
    for hosts in [
        "Host: test.com\r\nHost: other.test\r\n",
        "Host: test.com\r\nHost: test.com\r\n",
    ] {
        let request = format!("GET /anything HTTP/1.1\r\n{hosts}Connection: close\r\n\r\n");
        let status = raw_status_line(site.gw.http_addr(), &request).await?;
        assert!(status.starts_with("HTTP/1.1 400"), "{hosts:?}: {status}");
    }
    assert_eq!(site.echo.hits(), hits, "refused before the upstream");
    let one = "GET /anything HTTP/1.1\r\nHost: test.com\r\nConnection: close\r\n\r\n";
    let status = raw_status_line(site.gw.http_addr(), one).await?;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    Ok(())
}

#[tokio::test]
async fn http2_authority_and_host_must_agree() -> harness::Result<()> {
    let site = Site::start(PROXY_YAML).await?;
    let addr = site.gw.http_addr();
    let hits = site.echo.hits();
    assert_eq!(h2_status(addr, &[("host", "other.test")]).await?, "400");
    assert_eq!(h2_status(addr, &[("host", "test.com:1")]).await?, "400");
    assert_eq!(site.echo.hits(), hits, "refused before the upstream");
    assert_eq!(h2_status(addr, &[("host", "TEST.com")]).await?, "200");
    assert_eq!(h2_status(addr, &[]).await?, "200");
    Ok(())
}

/// The response status (or the error) of one HTTP/2 request (prior
/// knowledge, plain TCP) to `http://test.com/anything` with `headers`.
async fn h2_status(addr: SocketAddr, headers: &[(&str, &str)]) -> harness::Result<String> {
    let (client, connection) = h2::client::handshake(TcpStream::connect(addr).await?).await?;
    let driver = tokio::spawn(connection);
    let mut request = http::Request::get("http://test.com/anything");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(())?;
    let mut client = client.ready().await?;
    let outcome = match client.send_request(request, true) {
        Ok((response, _)) => match tokio::time::timeout(Duration::from_secs(5), response).await? {
            Ok(response) => response.status().as_u16().to_string(),
            Err(err) => format!("error: {err}"),
        },
        Err(err) => format!("error: {err}"),
    };
    driver.abort();
    Ok(outcome)
}

#[tokio::test]
async fn http2_rapid_reset_does_not_hurt_others() -> harness::Result<()> {
    let site = Site::start(PROXY_YAML).await?;
    let rss_before = site.rss_bytes().await?;
    let tcp = TcpStream::connect(site.gw.http_addr()).await?;
    let (mut client, connection) = h2::client::handshake(tcp).await?;
    let driver = tokio::spawn(connection);

    let started = Instant::now();
    let mut reset = 0u32;
    let mut stopped_by = None;
    while reset < 10_000 {
        client = match tokio::time::timeout(Duration::from_secs(5), client.clone().ready()).await {
            Ok(Ok(ready)) => ready,
            Ok(Err(err)) => {
                stopped_by = Some(err.to_string());
                break;
            }
            Err(_) => {
                stopped_by = Some("no stream slot for 5 s".to_owned());
                break;
            }
        };
        let request = http::Request::get("http://test.com/anything").body(())?;
        match client.send_request(request, false) {
            Ok((_, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                reset += 1;
            }
            Err(err) => {
                stopped_by = Some(err.to_string());
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    // A last request on the same connection: the gateway answers it only
    // after every frame before it, so the flood was fully processed.
    let after_flood = match client.ready().await {
        Ok(mut client) => match client.send_request(
            http::Request::get("http://test.com/anything").body(())?,
            true,
        ) {
            Ok((response, _)) => {
                match tokio::time::timeout(Duration::from_secs(10), response).await? {
                    Ok(response) => format!("answered {}", response.status()),
                    Err(err) => format!("refused: {err}"),
                }
            }
            Err(err) => format!("refused: {err}"),
        },
        Err(err) => format!("refused: {err}"),
    };
    let connection_end = match tokio::time::timeout(Duration::from_secs(5), driver).await {
        Ok(Ok(Ok(()))) => "closed cleanly".to_owned(),
        Ok(Ok(Err(err))) => err.to_string(),
        Ok(Err(err)) => err.to_string(),
        Err(_) => "still open".to_owned(),
    };
    eprintln!(
        "HTTP/2 rapid reset: {reset} streams opened and reset in {elapsed:?} (sending stopped by: {}); \
         a request after the flood on the same connection: {after_flood}; the connection: {connection_end}; \
         requests that reached the upstream: {}",
        stopped_by.as_deref().unwrap_or("nothing"),
        site.echo.hits()
    );

    site.assert_serving("an HTTP/2 rapid reset").await?;
    let h2 = curl_http(&site.gw, "/anything", &["--http2-prior-knowledge"])?;
    assert_eq!(h2.status, 200, "another HTTP/2 client is served: {h2:?}");
    assert_memory_bounded(rss_before, site.rss_bytes().await?);
    Ok(())
}

#[tokio::test]
async fn max_connections_caps_and_shows_in_status() -> harness::Result<()> {
    let site = Site::start("  max_connections: 5\n  timeouts: {header_read: 30}\n").await?;
    let gw = &site.gw;
    // The site check above left no connection open once it ended.
    wait_until("no open connection", PROPAGATION_TIMEOUT, || async {
        gw.status()
            .await
            .is_ok_and(|s| s["connections"]["current"] == 0)
    })
    .await?;

    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(gw.http_addr()).await?);
    }
    wait_until("5 open connections", PROPAGATION_TIMEOUT, || async {
        gw.status()
            .await
            .is_ok_and(|s| s["connections"]["current"] == 5)
    })
    .await?;

    let mut sixth = TcpStream::connect(gw.http_addr()).await?;
    let _ = sixth
        .write_all(b"GET /anything HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (answer, after) = until_closed(&mut sixth, Duration::from_secs(5)).await?;
    assert!(
        answer.is_empty(),
        "the 6th connection gets no response: {:?}",
        String::from_utf8_lossy(&answer)
    );
    let refused = curl_http(gw, "/anything", &[])?;
    assert_eq!(
        refused.status, 0,
        "at the cap, curl is refused too: {refused:?}"
    );

    let status = gw.status().await?;
    let connections = &status["connections"];
    eprintln!("max_connections 5: 6th connection closed after {after:?}; /status connections: {connections}");
    assert_eq!(connections["max"], 5);
    assert_eq!(connections["current"], 5);
    assert!(
        connections["refused"].as_u64().unwrap_or(0) >= 2,
        "{connections}"
    );
    assert_eq!(
        gw.status_code("/healthz").await?,
        200,
        "the status listener is not capped"
    );

    drop(held);
    wait_until("the slots to free", PROPAGATION_TIMEOUT, || async {
        gw.status()
            .await
            .is_ok_and(|s| s["connections"]["current"] == 0)
    })
    .await?;
    let out = curl_http(gw, "/anything", &[])?;
    assert_eq!(out.status, 200, "below the cap again: {out:?}");
    Ok(())
}

/// A second gateway process on the same config (and so the same ports).
struct Successor {
    child: Child,
    log: std::path::PathBuf,
}

impl Successor {
    fn start(config: &std::path::Path, log: std::path::PathBuf) -> harness::Result<Successor> {
        let out = std::fs::File::create(&log)?;
        let child = Command::new(gateway_bin()?)
            .arg("-c")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(Successor { child, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Successor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on a new connection: the way a fleet of clients behaves.
async fn one_request(addr: SocketAddr) -> harness::Result<u16> {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        let conn = tokio::spawn(conn);
        let request = http::Request::get("/anything")
            .header(http::header::HOST, "rolling.test")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        conn.abort();
        Ok::<_, anyhow::Error>(status)
    };
    tokio::time::timeout(Duration::from_secs(5), exchange).await?
}

#[tokio::test]
async fn rolling_restart_on_the_same_ports_loses_no_request() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let echo = EchoServer::start().await?;
    let opts = GatewayOptions {
        role: "data_plane",
        status: true,
        ..GatewayOptions::default()
    };
    let prefix = opts.prefix.clone();
    let route = plain_route("/anything", &echo.node()).to_string();
    etcd.etcdctl(&["put", &format!("{prefix}/routes/1"), &route])?;
    let mut old = Gateway::start_with(&etcd, opts).await?;
    eventually_status("the route on the old process", 200, || {
        curl_http(&old, "/anything", &[])
    })
    .await?;

    let addr = old.http_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            tokio::spawn(async move {
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match one_request(addr).await {
                        Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            errors.push(format!("{other:?}"));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
                errors
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let log_dir = tempfile::tempdir()?;
    let successor = Successor::start(old.config_path(), log_dir.path().join("successor.log"))?;
    wait_until("the successor to listen", PROPAGATION_TIMEOUT, || async {
        successor.log().contains("portcullis started")
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; successor log:\n{}", successor.log()))?;
    let before_stop = ok.load(Ordering::Relaxed);
    let stopping = Instant::now();
    old.stop().await;
    let drained_in = stopping.elapsed();
    let at_exit = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for client in clients {
        errors.extend(client.await?);
    }

    let (served, lost) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "rolling restart: {served} requests served ({} after the successor started), {lost} failed; old process drained and exited in {drained_in:?}",
        served - before_stop
    );
    assert_eq!(
        lost,
        0,
        "failures: {errors:?}; successor log:\n{}",
        successor.log()
    );
    assert!(
        served > at_exit,
        "the successor served the clients after the old process exited"
    );
    assert!(
        old.last_exit().is_some_and(|s| s.success()),
        "SIGTERM ends the old process cleanly"
    );
    let out = curl_http(&old, "/anything", &[])?;
    assert_eq!(
        out.status, 200,
        "the successor alone serves the port: {out:?}"
    );
    assert!(successor.log().contains("proxy listening"));
    Ok(())
}

/// Short admin limits, so that the tests measure them quickly.
const ADMIN_YAML: &str = "    timeouts: {header_read: 1, idle: 2}\n    max_connections: 3\n";

async fn admin_gateway(etcd: &Etcd) -> harness::Result<Gateway> {
    let opts = GatewayOptions {
        admin_yaml: ADMIN_YAML.to_owned(),
        ..GatewayOptions::default()
    };
    Gateway::start_with(etcd, opts).await
}

/// Writes `bytes` one every 100 ms until the peer closes (or 10 s pass);
/// returns how long the peer put up with it.
fn dribble(mut stream: TcpStream, bytes: &'static [u8]) -> tokio::task::JoinHandle<Duration> {
    tokio::spawn(async move {
        let started = Instant::now();
        for byte in bytes.iter().cycle() {
            let cut = stream.write_all(&[*byte]).await.is_err();
            if cut || started.elapsed() > Duration::from_secs(10) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    })
}

#[tokio::test]
async fn slow_and_silent_admin_clients_are_cut_and_others_wait_for_a_slot() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let gw = admin_gateway(&etcd).await?;
    let addr = gw.admin_addr();

    // The three slots: silent, headers a byte at a time, a body a byte at a time.
    let mut silent = TcpStream::connect(addr).await?;
    let mut headers = TcpStream::connect(addr).await?;
    headers
        .write_all(b"GET /apisix/admin/routes HTTP/1.1\r\nHost: x\r\n")
        .await?;
    let headers = dribble(headers, b"X");
    let mut body = TcpStream::connect(addr).await?;
    body.write_all(b"PUT /apisix/admin/upstreams/1 HTTP/1.1\r\nHost: x\r\nX-API-KEY: test-admin-key\r\nContent-Length: 100000\r\n\r\n{").await?;
    let (mut body_reader, body_writer) = body.into_split();
    let body_dribble = tokio::spawn(async move {
        let mut body_writer = body_writer;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10)
            && body_writer.write_all(b" ").await.is_ok()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    // A fourth client waits in the backlog until a timeout frees a slot.
    let started = Instant::now();
    let listed = gw.admin().get("/apisix/admin/routes").await?;
    let waited = started.elapsed();
    assert_eq!(listed.status, 200, "{}", listed.text);

    let (_, silent_after) = until_closed(&mut silent, Duration::from_secs(10)).await?;
    let headers_for = headers.await?;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        body_reader.read_to_end(&mut answer),
    )
    .await;
    body_dribble.abort();
    let answer = String::from_utf8_lossy(&answer);
    eprintln!("admin header_read 1 s, idle 2 s, 3 slots: silent closed after {silent_after:?}, header dribble cut after {headers_for:?}, fourth client served after {waited:?}; slow body: {}", answer.lines().next().unwrap_or_default());
    assert!(silent_after < Duration::from_secs(4), "{silent_after:?}");
    assert!(
        headers_for < Duration::from_secs(5),
        "trickled header bytes must not extend the deadline: {headers_for:?}"
    );
    assert!(read.is_ok(), "the slow body's connection is still open");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "served once a slot was freed: {waited:?}"
    );
    assert_eq!(
        gw.admin().get("/apisix/admin/upstreams/1").await?.status,
        404,
        "the cut body wrote nothing"
    );
    Ok(())
}

#[tokio::test]
async fn an_idle_http2_admin_connection_is_closed() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let gw = admin_gateway(&etcd).await?;
    let (_client, connection) =
        h2::client::handshake(TcpStream::connect(gw.admin_addr()).await?).await?;
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
    let after = started.elapsed();
    eprintln!("admin idle 2 s: HTTP/2 connection without requests closed after {after:?}");
    assert!(ended.is_ok(), "still open after 10 s");
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(5),
        "{after:?}"
    );
    Ok(())
}
