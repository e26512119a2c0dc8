//! Observability: the Prometheus metrics of the status listener (requests,
//! handshake refusals by reason, certificate expiry) and the access log.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::client_pki::{ClientCa, ClientSpec};
use harness::fixtures::{
    cert_args, curl_http, curl_https, eventually_status, path_str, plain_route, PROPAGATION_TIMEOUT,
};
use harness::pki::Leaf;
use harness::tls_setup::SecretDir;
use harness::{free_port, EchoServer, Etcd, Gateway, GatewayOptions};
use serde_json::{json, Value};
use tempfile::TempDir;

/// A gateway with its status listener and an access log at `log`.
async fn gateway(etcd: &Etcd, log: &Path) -> harness::Result<Gateway> {
    Gateway::start_with(
        etcd,
        GatewayOptions {
            status: true,
            proxy_yaml: format!("  access_log:\n    path: {}\n", json!(path_str(log))),
            ..GatewayOptions::default()
        },
    )
    .await
}

/// The value of the sample `name{labels...}` (every label given must match;
/// others may be present), if any.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?;
        let labelled = rest.is_empty() || rest.starts_with('{');
        let all = labels
            .iter()
            .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")));
        (labelled && all).then(|| value.parse().ok())?
    })
}

/// etcd, a gateway logging to `log` in `dir`, and an echo upstream.
struct Stack {
    _etcd: Etcd,
    dir: TempDir,
    log: PathBuf,
    gw: Gateway,
    echo: EchoServer,
}

impl Stack {
    async fn start() -> harness::Result<Stack> {
        let etcd = Etcd::start().await?;
        let dir = TempDir::new()?;
        let log = dir.path().join("access.log");
        let gw = gateway(&etcd, &log).await?;
        Ok(Stack {
            _etcd: etcd,
            dir,
            log,
            gw,
            echo: EchoServer::start().await?,
        })
    }
}

/// Scrapes until `cond` holds; returns that scrape.
async fn scrape_until(
    gw: &Gateway,
    what: &str,
    cond: impl Fn(&str) -> bool,
) -> harness::Result<String> {
    poll(|| async {
        let metrics = gw.metrics().await.unwrap_or_default();
        match cond(&metrics) {
            true => Ok(metrics),
            false => Err(format!("{what}; last scrape:\n{metrics}")),
        }
    })
    .await
}

/// Runs `probe` until it succeeds, for [`PROPAGATION_TIMEOUT`] at most; the
/// error is the last failure's.
async fn poll<T, Fut>(mut probe: impl FnMut() -> Fut) -> harness::Result<T>
where
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + PROPAGATION_TIMEOUT;
    loop {
        match probe().await {
            Ok(done) => return Ok(done),
            Err(last) if Instant::now() >= deadline => anyhow::bail!("timed out: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits until the sample reaches at least `min`; returns the scrape.
async fn until_sample(
    gw: &Gateway,
    name: &str,
    labels: &[(&str, &str)],
    min: f64,
) -> harness::Result<String> {
    let what = format!("{name}{labels:?} >= {min}");
    scrape_until(gw, &what, |metrics| {
        sample(metrics, name, labels).is_some_and(|v| v >= min)
    })
    .await
}

/// The access log's lines, parsed (each must be JSON).
fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn requests_in(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l.get("type").is_none()).collect()
}

/// Waits until the access log holds exactly as many request lines as the
/// gateway counted requests; returns every line.
async fn until_logged(gw: &Gateway, log: &Path) -> harness::Result<Vec<Value>> {
    poll(|| async {
        let metrics = gw.metrics().await.unwrap_or_default();
        let counted = sample(&metrics, "portcullis_http_requests_total", &[]).unwrap_or(0.0);
        let lines = log_lines(log);
        let logged = requests_in(&lines).len();
        match counted > 0.0 && logged as f64 == counted {
            true => Ok(lines),
            false => Err(format!("{counted} requests counted, {logged} logged")),
        }
    })
    .await
}

#[tokio::test]
async fn requests_are_counted_and_logged_by_status() -> harness::Result<()> {
    let stack = Stack::start().await?;
    let (gw, echo, log) = (&stack.gw, &stack.echo, &stack.log);
    let dead = format!("127.0.0.1:{}", free_port());
    gw.admin()
        .create_all([
            ("routes/ok", plain_route("/ok", &echo.node())),
            ("routes/down", plain_route("/down", &dead)),
        ])
        .await?;
    eventually_status("/ok", 200, || curl_http(gw, "/ok", &[])).await?;
    let ok = curl_http(gw, "/ok", &["-H", "X-Request-Id: trace-42"])?;
    assert_eq!(ok.status, 200);
    let echoed: Value = serde_json::from_str(&ok.body)?;
    assert_eq!(echoed["headers"]["x-request-id"], "trace-42");
    let generated = curl_http(gw, "/ok", &[])?;
    let echoed: Value = serde_json::from_str(&generated.body)?;
    let generated_id = echoed["headers"]["x-request-id"]
        .as_str()
        .expect("an X-Request-Id is generated and forwarded")
        .to_owned();
    assert_eq!(curl_http(gw, "/missing", &[])?.status, 404);
    assert_eq!(curl_http(gw, "/down", &[])?.status, 502);

    let ok = [("code", "200"), ("route", "ok"), ("node", &echo.node())];
    let metrics = until_sample(gw, "portcullis_http_status", &ok, 3.0).await?;
    let not_found = [("code", "404"), ("route", "")];
    assert_eq!(
        sample(&metrics, "portcullis_http_status", &not_found),
        Some(1.0)
    );
    let bad_gateway = [("code", "502"), ("route", "down"), ("node", &dead)];
    assert_eq!(
        sample(&metrics, "portcullis_http_status", &bad_gateway),
        Some(1.0)
    );
    let requests = sample(&metrics, "portcullis_http_requests_total", &[]).expect("requests");
    assert!(requests >= 5.0, "{requests}");
    let latency = sample(
        &metrics,
        "portcullis_http_latency_count",
        &[("type", "request")],
    );
    assert_eq!(latency, Some(requests));
    let upstream = sample(
        &metrics,
        "portcullis_http_latency_count",
        &[("type", "upstream")],
    );
    assert!(
        upstream.is_some_and(|n| n >= 3.0 && n < requests),
        "{upstream:?}"
    );
    let egress = [("type", "egress"), ("route", "ok")];
    assert!(sample(&metrics, "portcullis_bandwidth", &egress).is_some_and(|b| b > 0.0));
    assert_eq!(
        sample(&metrics, "portcullis_etcd_reachable", &[]),
        Some(1.0)
    );
    // Each curl above was a connection of its own.
    let connections = |state| {
        sample(
            &metrics,
            "portcullis_http_current_connections",
            &[("state", state)],
        )
    };
    let handled = connections("handled").expect("handled connections");
    assert!(handled >= requests, "{handled} < {requests}");
    assert_eq!(connections("accepted"), Some(handled), "none refused");
    assert!(connections("active").is_some());
    assert!(sample(&metrics, "portcullis_node_info", &[]).is_some());
    assert!(
        sample(&metrics, "portcullis_config_apply_seconds_count", &[]).is_some_and(|n| n >= 1.0)
    );
    let alias = harness::curl(&[&format!(
        "http://{}/apisix/prometheus/metrics",
        gw.status_addr()
    )])?;
    assert!(alias.body.contains("portcullis_http_requests_total"));

    let lines = until_logged(gw, log).await?;
    let requests = requests_in(&lines);
    let by_id = |id: &str| requests.iter().find(|l| l["request_id"] == id).copied();
    let traced = by_id("trace-42").expect("the client's request id is logged");
    assert_eq!(traced["route_id"], "ok");
    assert_eq!(traced["status"], 200);
    assert_eq!(traced["upstream_status"], 200);
    assert_eq!(traced["upstream_addr"], echo.node());
    assert_eq!(traced["method"], "GET");
    assert_eq!(traced["path"], "/ok");
    assert_eq!(traced["client_addr"], "127.0.0.1");
    assert!(traced["client_cert"].is_null(), "plain HTTP: {traced}");
    assert!(by_id(&generated_id).is_some(), "the generated id is logged");
    let down = requests
        .iter()
        .find(|l| l["status"] == 502)
        .expect("502 logged");
    assert_eq!(down["route_id"], "down");
    assert!(down["upstream_status"].is_null());
    Ok(())
}

/// A client CA trusted by `ssls/mtls` and certificates to refuse.
struct ClientFiles {
    good: (PathBuf, PathBuf),
    stranger: (PathBuf, PathBuf),
    expired: (PathBuf, PathBuf),
    good_leaf: Leaf,
}

fn client_files(ca: &ClientCa, dir: &Path) -> ClientFiles {
    let good_leaf = ca.client("good", "Org");
    let stranger = ClientCa::new("Stranger CA").client("stranger", "Org");
    let expired = ca.client_with(
        "expired",
        &ClientSpec {
            expired: true,
            ..ClientSpec::default()
        },
    );
    ClientFiles {
        good: good_leaf.write(dir, "good"),
        stranger: stranger.write(dir, "stranger"),
        expired: expired.write(dir, "expired"),
        good_leaf,
    }
}

fn with_cert((cert, key): &(PathBuf, PathBuf)) -> [&str; 4] {
    cert_args(cert, key)
}

#[tokio::test]
async fn handshake_refusals_are_counted_by_reason() -> harness::Result<()> {
    let stack = Stack::start().await?;
    let (gw, echo, log) = (&stack.gw, &stack.echo, &stack.log);
    let ca = ClientCa::new("Client CA");
    let server = ca.server("mtls.test");
    let files = client_files(&ca, stack.dir.path());
    gw.admin()
        .create_all([
            (
                "ssls/mtls",
                json!({"sni": "mtls.test", "cert": server.cert_pem, "key": server.key_pem,
                       "client": {"ca": ca.cert_pem}}),
            ),
            ("routes/1", plain_route("/anything", &echo.node())),
        ])
        .await?;
    let good = with_cert(&files.good);
    eventually_status("mtls.test with a good certificate", 200, || {
        curl_https(gw, "mtls.test", "/anything", &good)
    })
    .await?;
    for (args, reason) in [
        (Vec::new(), "no_certificate"),
        (with_cert(&files.stranger).to_vec(), "unknown_ca"),
        (with_cert(&files.expired).to_vec(), "expired"),
    ] {
        let refused = curl_https(gw, "mtls.test", "/anything", &args)?;
        assert_eq!(refused.status, 0, "{reason}: {refused:?}");
        let labels = [("reason", reason), ("ssl_id", "mtls")];
        until_sample(gw, "portcullis_tls_handshake_failures_total", &labels, 1.0).await?;
    }
    let unknown_sni = curl_https(gw, "nobody.test", "/anything", &[])?;
    assert_eq!(unknown_sni.status, 0);
    let metrics = until_sample(
        gw,
        "portcullis_tls_handshake_failures_total",
        &[("reason", "unknown_sni")],
        1.0,
    )
    .await?;
    let completed = [("ssl_id", "mtls"), ("kind", "full")];
    assert!(sample(&metrics, "portcullis_tls_handshakes_total", &completed).is_some());
    for reason in ["no_certificate", "unknown_ca", "expired"] {
        assert_eq!(
            sample(
                &metrics,
                "portcullis_tls_handshake_failures_total",
                &[("reason", reason)]
            ),
            Some(1.0),
            "{reason} counted once"
        );
    }

    let lines = until_logged(gw, log).await?;
    let served = requests_in(&lines)
        .into_iter()
        .find(|l| l["status"] == 200)
        .expect("the served request is logged");
    let facts = cert_facts(&files.good_leaf.cert_pem);
    assert_eq!(served["sni"], "mtls.test");
    assert_eq!(served["ssl_id"], "mtls");
    assert!(served["tls_protocol"]
        .as_str()
        .is_some_and(|p| p.starts_with("TLSv1.")));
    assert_eq!(served["client_cert"]["verify"], "SUCCESS");
    assert_eq!(
        served["client_cert"]["subject"],
        "CN=good,O=Org,ST=Sweden,C=SE"
    );
    assert_eq!(served["client_cert"]["serial"], facts.serial);
    assert_eq!(served["client_cert"]["sha256"], facts.sha256);
    // Refusals are logged apart from requests: wait for each of them.
    let reasons = ["no_certificate", "unknown_ca", "expired", "unknown_sni"];
    poll(|| async {
        let lines = log_lines(log);
        let refusals: Vec<&str> = lines
            .iter()
            .filter(|l| l["type"] == "tls_handshake_refused")
            .filter_map(|l| l["reason"].as_str())
            .collect();
        match reasons.iter().find(|r| !refusals.contains(r)) {
            None => Ok(()),
            Some(missing) => Err(format!("{missing} not in {refusals:?}")),
        }
    })
    .await
}

struct Facts {
    serial: String,
    sha256: String,
    not_after: i64,
}

fn cert_facts(pem_text: &str) -> Facts {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).expect("PEM");
    let cert = pem.parse_x509().expect("X.509");
    let sha256 = harness::openssl(&["x509", "-noout", "-fingerprint", "-sha256"], pem_text)
        .expect("openssl");
    Facts {
        serial: cert.raw_serial_as_string().replace(':', "").to_uppercase(),
        sha256: sha256
            .trim()
            .rsplit('=')
            .next()
            .unwrap_or_default()
            .replace(':', "")
            .to_lowercase(),
        not_after: cert.validity().not_after.timestamp(),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Waits until the expiry gauge of (`kind`, `id`) is `not_after - now`
/// (within a minute).
async fn until_expiry(gw: &Gateway, kind: &str, id: &str, not_after: i64) -> harness::Result<()> {
    let labels = [("kind", kind), ("id", id)];
    let what = format!("{kind} {id} expiring in {} s", not_after - now());
    scrape_until(gw, &what, |metrics| {
        sample(metrics, "portcullis_certificate_expiry_seconds", &labels)
            .is_some_and(|v| (v - (not_after - now()) as f64).abs() < 60.0)
    })
    .await
    .map(drop)
}

#[tokio::test]
async fn expiry_gauges_follow_the_loaded_certificates() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let dir = TempDir::new()?;
    let gw = gateway(&etcd, &dir.path().join("access.log")).await?;
    let ca = ClientCa::new("Expiry CA");
    let first = harness::pki::Ca::new("Server CA").server("exp.test", &["exp.test"]);
    let ssl = |server: &Leaf| {
        json!({"sni": "exp.test", "cert": server.cert_pem, "key": server.key_pem,
               "client": {"ca": ca.cert_pem}})
    };
    gw.admin().create("ssls/exp", ssl(&first)).await?;
    let first_after = cert_facts(&first.cert_pem).not_after;
    until_expiry(&gw, "server", "exp", first_after).await?;
    until_expiry(&gw, "client_ca", "exp", cert_facts(&ca.cert_pem).not_after).await?;

    // rcgen's default validity (to 4096) differs from the first (to 2124).
    let second = ca.server("exp.test");
    let second_after = cert_facts(&second.cert_pem).not_after;
    assert_ne!(first_after, second_after);
    gw.admin()
        .put_expecting("/apisix/admin/ssls/exp", ssl(&second), 200)
        .await?;
    until_expiry(&gw, "server", "exp", second_after).await?;
    let metrics = gw.metrics().await?;
    let earliest = sample(
        &metrics,
        "portcullis_certificate_earliest_expiry_seconds",
        &[],
    )
    .expect("earliest expiry");
    let soonest = second_after.min(cert_facts(&ca.cert_pem).not_after) - now();
    assert!(
        (earliest - soonest as f64).abs() < 60.0,
        "{earliest} vs {soonest}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unwritable_access_log_does_not_stop_traffic() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let dir = TempDir::new()?;
    // A directory cannot be opened for appending.
    let gw = gateway(&etcd, dir.path()).await?;
    let echo = EchoServer::start().await?;
    gw.admin()
        .create("routes/1", plain_route("/ok", &echo.node()))
        .await?;
    eventually_status("/ok", 200, || curl_http(&gw, "/ok", &[])).await?;
    for _ in 0..5 {
        assert_eq!(curl_http(&gw, "/ok", &[])?.status, 200);
    }
    until_sample(&gw, "portcullis_access_log_write_errors_total", &[], 5.0).await?;
    gw.until_logged("cannot write the access log").await?;
    Ok(())
}

#[tokio::test]
async fn certificate_files_of_the_config_are_reported_and_reread() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let ca = harness::pki::Ca::new("Admin CA");
    let first = ca.server("admin.test", &["admin.test"]);
    let mut secret = SecretDir::mount(&first, &ca.cert_pem)?;
    let gw = Gateway::start_with(
        &etcd,
        GatewayOptions {
            status: true,
            admin_tls: Some(secret.admin_tls(true)),
            ..GatewayOptions::default()
        },
    )
    .await?;
    let cert = secret.path("tls.crt");
    let cert = path_str(&cert);
    until_expiry(&gw, "file", cert, cert_facts(&first.cert_pem).not_after).await?;
    let ca_file = secret.path("ca.crt");
    until_expiry(
        &gw,
        "file",
        path_str(&ca_file),
        cert_facts(&ca.cert_pem).not_after,
    )
    .await?;

    // A renewed certificate (rcgen's default validity, to 4096) is read at
    // the next scrape.
    let renewed = ClientCa::new("Renewing CA").server("admin.test");
    secret.rotate(&renewed, &ca.cert_pem)?;
    until_expiry(&gw, "file", cert, cert_facts(&renewed.cert_pem).not_after).await?;
    Ok(())
}
