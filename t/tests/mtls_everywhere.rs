//! mTLS everywhere: gateway ↔ etcd and operator ↔ admin API mutually
//! authenticated with certificates from one test PKI (separate certificates
//! for the etcd server, the gateway as etcd client, the admin server and the
//! operator), and certificate files rotated under a running gateway the way
//! the kubelet rotates a cert-manager Secret.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::fixtures::{curl_http, eventually_status, plain_route, CertFacts};
use harness::pki::{Ca, Leaf};
use harness::tls_setup::{served_cert, AdminTlsFiles, EtcdClientTls, EtcdServerTls, SecretDir};
use harness::{
    curl, free_port, gateway_bin, wait_until, CurlOutput, EchoServer, Etcd, Gateway, GatewayOptions,
};
use serde_json::Value;
use tempfile::TempDir;

const API_KEY: &str = "test-admin-key";
/// Rotated files are polled every second; allow for a slow CI machine.
const ROTATION_TIMEOUT: Duration = Duration::from_secs(20);

/// One CA and every certificate of the architecture, as files.
struct Pki {
    ca: Ca,
    dir: TempDir,
    operator: (PathBuf, PathBuf),
}

impl Pki {
    fn new() -> harness::Result<Pki> {
        let ca = Ca::new("mTLS Everywhere CA");
        let dir = tempfile::Builder::new()
            .prefix("portcullis-mtls-")
            .tempdir()?;
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem)?;
        ca.server("etcd", &["etcd", "127.0.0.1"])
            .write(dir.path(), "etcd-server");
        ca.client("harness").write(dir.path(), "etcd-harness");
        ca.client("gateway").write(dir.path(), "gateway-etcd");
        ca.server("admin", &["admin.test", "127.0.0.1"])
            .write(dir.path(), "admin-server");
        let operator = ca.client("operator").write(dir.path(), "operator");
        Ok(Pki { ca, dir, operator })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// etcd with `--client-cert-auth`, trusting the CA.
    fn etcd_server(&self) -> EtcdServerTls {
        EtcdServerTls {
            trusted_ca: self.path("ca.crt"),
            cert: self.path("etcd-server.crt"),
            key: self.path("etcd-server.key"),
            server_ca: self.path("ca.crt"),
            client_cert: self.path("etcd-harness.crt"),
            client_key: self.path("etcd-harness.key"),
        }
    }

    /// The gateway's `deployment.etcd.tls`, verifying etcd as `etcd`.
    fn gateway_etcd(&self) -> EtcdClientTls {
        EtcdClientTls {
            ca: self.path("ca.crt"),
            cert: Some(self.path("gateway-etcd.crt")),
            key: Some(self.path("gateway-etcd.key")),
            sni: Some("etcd".to_owned()),
        }
    }

    /// The gateway's `deployment.admin.tls`, requiring client certificates.
    fn admin_tls(&self) -> AdminTlsFiles {
        AdminTlsFiles {
            cert: self.path("admin-server.crt"),
            key: self.path("admin-server.key"),
            client_ca: Some(self.path("ca.crt")),
        }
    }

    /// Options for a gateway whose admin API is HTTPS only, requiring client certificates.
    fn admin_tls_options(&self) -> GatewayOptions {
        GatewayOptions {
            admin_tls: Some(self.admin_tls()),
            ..GatewayOptions::default()
        }
    }

    /// curl to the HTTPS admin API, verifying it with the CA; presenting
    /// the operator's certificate when `with_cert`.
    fn admin(&self, gw: &Gateway, call: AdminCall<'_>) -> harness::Result<CurlOutput> {
        let url = format!("https://127.0.0.1:{}{}", gw.admin_addr().port(), call.path);
        let ca = self.path("ca.crt");
        let mut args = vec![url.as_str(), "-X", call.method, "--cacert", utf8(&ca)];
        if call.with_cert {
            args.extend([
                "--cert",
                utf8(&self.operator.0),
                "--key",
                utf8(&self.operator.1),
            ]);
        }
        let header = call.api_key.map(|key| format!("X-API-KEY: {key}"));
        if let Some(header) = &header {
            args.extend(["-H", header]);
        }
        if let Some(body) = call.body {
            args.extend(["-H", "Content-Type: application/json", "-d", body]);
        }
        curl(&args)
    }
}

/// One admin API call over curl.
struct AdminCall<'a> {
    method: &'a str,
    path: &'a str,
    api_key: Option<&'a str>,
    body: Option<&'a str>,
    with_cert: bool,
}

impl<'a> AdminCall<'a> {
    /// `GET path` with the operator's certificate and the API key.
    fn get(path: &'a str) -> AdminCall<'a> {
        AdminCall {
            method: "GET",
            path,
            api_key: Some(API_KEY),
            body: None,
            with_cert: true,
        }
    }
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// A YAML (JSON) string literal.
fn q(s: &str) -> String {
    Value::from(s).to_string()
}

fn json(out: &CurlOutput) -> Value {
    serde_json::from_str(&out.body).unwrap_or(Value::Null)
}

#[tokio::test]
async fn admin_writes_travel_over_etcd_mtls_to_the_data_plane() -> harness::Result<()> {
    let pki = Pki::new()?;
    let etcd = Etcd::start_tls(pki.etcd_server()).await?;
    let gw = Gateway::start_with(
        &etcd,
        GatewayOptions {
            etcd_tls: Some(pki.gateway_etcd()),
            ..pki.admin_tls_options()
        },
    )
    .await?;
    let echo = EchoServer::start().await?;

    let route = plain_route("/mtls", &echo.node()).to_string();
    let put = pki.admin(
        &gw,
        AdminCall {
            method: "PUT",
            body: Some(&route),
            ..AdminCall::get("/apisix/admin/routes/1")
        },
    )?;
    assert_eq!(put.status, 201, "admin PUT over mTLS: {put:?}");

    eventually_status("the route to be served", 200, || {
        curl_http(&gw, "/mtls", &[])
    })
    .await?;
    let stored = etcd.etcdctl(&[
        "get",
        "--print-value-only",
        &format!("{}/routes/1", gw.prefix()),
    ])?;
    assert!(stored.contains("/mtls"), "stored in the TLS etcd: {stored}");
    Ok(())
}

#[tokio::test]
async fn admin_api_requires_a_client_certificate_and_the_key() -> harness::Result<()> {
    let pki = Pki::new()?;
    let etcd = Etcd::start().await?;
    let gw = Gateway::start_with(&etcd, pki.admin_tls_options()).await?;

    let ok = pki.admin(&gw, AdminCall::get("/apisix/admin/routes"))?;
    assert_eq!(ok.status, 200, "certificate and key: {ok:?}");

    let anonymous = pki.admin(
        &gw,
        AdminCall {
            with_cert: false,
            ..AdminCall::get("/apisix/admin/routes")
        },
    )?;
    assert_eq!(
        anonymous.status, 0,
        "no HTTP answer without a certificate: {anonymous:?}"
    );
    assert_ne!(anonymous.exit_code, 0, "{anonymous:?}");
    wait_until(
        "the gateway to log the refused handshake",
        ROTATION_TIMEOUT,
        || {
            let logged = gw.log().contains("admin TLS handshake refused");
            async move { logged }
        },
    )
    .await?;

    let wrong_key = pki.admin(
        &gw,
        AdminCall {
            api_key: Some("not-the-key"),
            ..AdminCall::get("/apisix/admin/routes")
        },
    )?;
    assert_eq!(wrong_key.status, 401, "{wrong_key:?}");
    assert_eq!(json(&wrong_key)["error_msg"], "failed to check token");

    let plain = curl(&[
        &format!("http://{}/apisix/admin/routes", gw.admin_addr()),
        "-H",
        "X-API-KEY: test-admin-key",
    ])?;
    assert_eq!(
        plain.status, 0,
        "HTTPS only: plain HTTP gets no answer: {plain:?}"
    );
    Ok(())
}

#[tokio::test]
async fn admin_api_refuses_addresses_outside_the_allow_list() -> harness::Result<()> {
    let pki = Pki::new()?;
    let etcd = Etcd::start().await?;
    let gw = Gateway::start_with(
        &etcd,
        GatewayOptions {
            admin_allow: Some(vec!["10.0.0.0/8".to_owned()]),
            ..pki.admin_tls_options()
        },
    )
    .await?;
    // Closed at accept, before the TLS handshake: it costs the gateway nothing.
    let refused = pki.admin(&gw, AdminCall::get("/apisix/admin/routes"))?;
    assert_eq!(
        refused.status, 0,
        "127.0.0.1 is outside 10.0.0.0/8: {refused:?}"
    );
    harness::wait_until("the refusal is logged", Duration::from_secs(5), || async {
        let log = gw.log();
        log.contains("127.0.0.1") && log.contains("outside deployment.admin.allow")
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_wrong_etcd_client_certificate_stops_the_start_naming_the_endpoint() -> harness::Result<()>
{
    let pki = Pki::new()?;
    let etcd = Etcd::start_tls(pki.etcd_server()).await?;
    let impostor = Ca::new("Impostor CA").client("gateway");
    let (cert, key) = impostor.write(pki.dir.path(), "impostor");
    let config = pki.dir.path().join("impostor.yaml");
    std::fs::write(
        &config,
        format!(
            "deployment:\n  role: data_plane\n  etcd:\n    endpoints: [{endpoint}]\n    timeout: 3\n    tls: {{ca: {ca}, cert: {cert}, key: {key}, sni: etcd}}\nproxy:\n  http_listen: [\"127.0.0.1:{http}\"]\n  https_listen: []\n",
            endpoint = q(&etcd.endpoint()),
            ca = q(utf8(&pki.path("ca.crt"))),
            cert = q(utf8(&cert)),
            key = q(utf8(&key)),
            http = free_port(),
        ),
    )?;
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg("30")
        .arg(gateway_bin()?)
        .arg("-c")
        .arg(&config)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the gateway must not start: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "etcd at {} refused the connection: TLS: received fatal alert",
            etcd.endpoint()
        )),
        "the error names the endpoint and the TLS reason: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "fails fast, not a hang: {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_gateway_waits_for_a_tls_etcd_that_is_down() -> harness::Result<()> {
    let pki = Pki::new()?;
    let mut etcd = Etcd::start_tls(pki.etcd_server()).await?;
    etcd.stop().await;
    let gw = Gateway::start_with(
        &etcd,
        GatewayOptions {
            etcd_tls: Some(pki.gateway_etcd()),
            ..GatewayOptions::default()
        },
    )
    .await?;
    etcd.restart().await?;
    let echo = EchoServer::start().await?;
    let url = format!("http://{}/apisix/admin/routes/late", gw.admin_addr());
    let route = plain_route("/late", &echo.node()).to_string();
    let put = || {
        curl(&[
            &url,
            "-X",
            "PUT",
            "-H",
            "X-API-KEY: test-admin-key",
            "-d",
            &route,
        ])
    };
    let mut last = None;
    wait_until(
        "the admin API to write through etcd",
        ROTATION_TIMEOUT,
        || {
            let out = put();
            // 201, or 200 when an earlier attempt wrote but timed out.
            let written = matches!(&out, Ok(o) if o.status == 201 || o.status == 200);
            last = Some(out);
            async move { written }
        },
    )
    .await
    .map_err(|e| e.context(format!("last answer: {last:?}")))?;
    eventually_status("the route to be served", 200, || {
        curl_http(&gw, "/late", &[])
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn rotated_admin_certificate_files_reach_new_handshakes() -> harness::Result<()> {
    let pki = Pki::new()?;
    let first = pki.ca.server("admin", &["admin.test", "127.0.0.1"]);
    let mut secret = SecretDir::mount(&first, &pki.ca.cert_pem)?;
    let etcd = Etcd::start().await?;
    let gw = Gateway::start_with(
        &etcd,
        GatewayOptions {
            admin_tls: Some(secret.admin_tls(true)),
            ..GatewayOptions::default()
        },
    )
    .await?;
    let operator = (pki.operator.0.as_path(), pki.operator.1.as_path());
    let serial = |leaf: &Leaf| CertFacts::of(&leaf.cert_pem).map(|facts| facts.serial);
    let served =
        || served_cert(gw.admin_addr(), "admin.test", Some(operator)).map(|facts| facts.serial);
    assert_eq!(served()?, serial(&first)?);

    // cert-manager renews: the kubelet swaps `..data` to a new generation.
    let second = pki.ca.server("admin", &["admin.test", "127.0.0.1"]);
    let second_serial = serial(&second)?;
    secret.rotate(&second, &pki.ca.cert_pem)?;
    wait_until(
        "new handshakes to show the rotated certificate",
        ROTATION_TIMEOUT,
        || {
            let now = served().ok();
            let rotated = now.as_deref() == Some(second_serial.as_str());
            async move { rotated }
        },
    )
    .await?;
    let ok = pki.admin(&gw, AdminCall::get("/apisix/admin/routes"))?;
    assert_eq!(
        ok.status, 200,
        "the API still works after the rotation: {ok:?}"
    );

    // A broken renewal: refused with a logged reason, the last good one stays.
    secret.rotate_to(&[
        (
            "tls.crt",
            "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
        ),
        ("tls.key", &second.key_pem),
        ("ca.crt", &pki.ca.cert_pem),
    ])?;
    wait_until(
        "the broken file to be refused in the log",
        ROTATION_TIMEOUT,
        || {
            let log = gw.log();
            let refused = log.contains("refusing the changed certificate files")
                && log.contains("deployment.admin.tls.cert");
            async move { refused }
        },
    )
    .await?;
    assert_eq!(
        served()?,
        second_serial,
        "the last good certificate is still served"
    );
    Ok(())
}

#[tokio::test]
async fn rotated_etcd_client_certificate_is_used_by_new_etcd_calls() -> harness::Result<()> {
    let pki = Pki::new()?;
    // etcd trusts client certificates of two CAs: the usual one and the
    // one the gateway's certificate is renewed from.
    let renewal_ca = Ca::new("Renewal CA");
    let mut etcd_tls = pki.etcd_server();
    etcd_tls.trusted_ca = pki.path("etcd-trust.crt");
    std::fs::write(
        &etcd_tls.trusted_ca,
        format!("{}{}", pki.ca.cert_pem, renewal_ca.cert_pem),
    )?;
    let mut etcd = Etcd::start_tls(etcd_tls.clone()).await?;

    let mut secret = SecretDir::mount(&pki.ca.client("gateway"), &pki.ca.cert_pem)?;
    let gw = Gateway::start_with(
        &etcd,
        GatewayOptions {
            etcd_tls: Some(EtcdClientTls {
                ca: secret.path("ca.crt"),
                cert: Some(secret.path("tls.crt")),
                key: Some(secret.path("tls.key")),
                sni: Some("etcd".to_owned()),
            }),
            ..GatewayOptions::default()
        },
    )
    .await?;
    let admin = gw.admin();
    let status = || {
        let admin = admin.clone();
        async move {
            admin
                .get("/apisix/admin/routes")
                .await
                .map(|r| r.status)
                .unwrap_or(0)
        }
    };
    assert_eq!(status().await, 200);
    let logged = |what: &'static str| {
        let found = gw.log().contains(what);
        async move { found }
    };

    // A certificate etcd does not trust is refused; the working one stays.
    let impostor = Ca::new("Impostor CA").client("gateway");
    secret.rotate(&impostor, &pki.ca.cert_pem)?;
    wait_until(
        "the untrusted certificate to be refused",
        ROTATION_TIMEOUT,
        || logged("refusing the changed etcd TLS files"),
    )
    .await?;
    assert_eq!(
        status().await,
        200,
        "the previous certificate is still in use"
    );

    // A renewal from the second CA is taken into use...
    secret.rotate(&renewal_ca.client("gateway"), &pki.ca.cert_pem)?;
    wait_until(
        "the renewed certificate to be used",
        ROTATION_TIMEOUT,
        || logged("etcd TLS files changed: new etcd requests use them"),
    )
    .await?;

    // ... which shows once etcd trusts only that CA: the original
    // certificate would now be refused.
    etcd.stop().await;
    std::fs::write(&etcd_tls.trusted_ca, &renewal_ca.cert_pem)?;
    let harness = renewal_ca.client("harness");
    std::fs::write(&etcd_tls.client_cert, &harness.cert_pem)?;
    std::fs::write(&etcd_tls.client_key, &harness.key_pem)?;
    etcd.restart().await?;
    wait_until(
        "etcd to accept the renewed identity",
        ROTATION_TIMEOUT,
        || {
            let status = status();
            async move { status.await == 200 }
        },
    )
    .await?;
    Ok(())
}
