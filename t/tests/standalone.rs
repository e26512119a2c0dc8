//! Standalone mode: a data plane serving routes, upstreams and SSL objects
//! from a file (`deployment.config_provider: yaml`), with no etcd at all.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::fixtures::{
    cert_args, curl_http, curl_https, eventually_status, plain_ssl, walkthrough_route,
    walkthrough_ssl, CertFacts,
};
use harness::pki::{Ca, OpensslPki};
use harness::{gateway_bin, EchoServer, Gateway, GatewayOptions};
use serde_json::{json, Value};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(15);

/// The directory holding the standalone file.
struct ConfigDir {
    dir: TempDir,
}

impl ConfigDir {
    fn new() -> harness::Result<ConfigDir> {
        Ok(ConfigDir {
            dir: tempfile::tempdir()?,
        })
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("apisix.yaml")
    }

    /// Writes `doc` as the file, atomically (JSON is YAML), ending with `#END`.
    fn write(&self, doc: &Value) -> harness::Result<()> {
        self.write_text(&format!("{doc:#}\n#END\n"))
    }

    /// Writes `text` as the file, atomically: a new file renamed over it.
    fn write_text(&self, text: &str) -> harness::Result<()> {
        let tmp = self.dir.path().join(".apisix.yaml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.file())?;
        Ok(())
    }

    async fn start(&self, opts: GatewayOptions) -> harness::Result<Gateway> {
        Gateway::start_standalone(GatewayOptions {
            standalone_file: Some(self.file()),
            status: true,
            ..opts
        })
        .await
    }
}

fn upstream(id: &str, echo: &EchoServer) -> Value {
    json!({ "id": id, "type": "roundrobin", "nodes": { echo.node(): 1 } })
}

fn route(id: &str, uri: &str, upstream_id: &str) -> Value {
    json!({ "id": id, "uri": uri, "upstream_id": upstream_id })
}

async fn until_http(gw: &Gateway, path: &str, status: u16) -> harness::Result<()> {
    eventually_status(&format!("GET {path} -> {status}"), status, || {
        curl_http(gw, path, &[])
    })
    .await?;
    Ok(())
}

/// Waits until `/status` reports a refused file whose reason contains `needle`.
async fn until_refused(gw: &Gateway, needle: &str) -> harness::Result<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = gw.status().await?;
        let reason = status["standalone"]["last_error"].as_str().unwrap_or("");
        if reason.contains(needle) {
            return Ok(status);
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!("/status never reported {needle:?}: {status:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn serves_the_walkthrough_from_a_file_without_etcd() -> harness::Result<()> {
    let echo = EchoServer::start().await?;
    let pki = OpensslPki::walkthrough()?;
    let dir = ConfigDir::new()?;
    let mut ssl = walkthrough_ssl(&pki);
    ssl["id"] = json!(1);
    let mut route = walkthrough_route(&echo.node());
    route["id"] = json!(1);
    dir.write(&json!({ "ssls": [ssl], "routes": [route] }))?;
    let gw = dir.start(GatewayOptions::default()).await?;

    let (cert, key) = (pki.path("client.cer"), pki.path("client.key"));
    let out = eventually_status("the walkthrough request", 200, || {
        curl_https(&gw, "test.com", "/anything", &cert_args(&cert, &key))
    })
    .await?;
    let body: Value = serde_json::from_str(&out.body)?;
    let expected = CertFacts::of(&pki.read("client.cer"))?;
    assert_eq!(
        body["headers"]["x-ssl-client-fingerprint"],
        expected.fingerprint.as_str()
    );
    assert_eq!(body["headers"]["x-ssl-client-s-dn"], "CN=CLIENT");
    let refused = curl_https(&gw, "test.com", "/anything", &[])?;
    assert_eq!(refused.status, 0, "no client certificate: {refused:?}");

    let status = gw.status().await?;
    assert_eq!(status["config"]["source"], "file", "{status:#}");
    assert_eq!(status["etcd"], Value::Null, "{status:#}");
    assert_eq!(status["stale"], false, "{status:#}");
    assert_eq!(
        status["standalone"]["path"],
        dir.file().display().to_string()
    );
    assert!(!gw.log().contains("etcd reachable"), "{}", gw.log());
    Ok(())
}

#[tokio::test]
async fn changes_apply_whole_and_invalid_ones_are_kept_out() -> harness::Result<()> {
    let echo = EchoServer::start().await?;
    let dir = ConfigDir::new()?;
    let up = upstream("u1", &echo);
    dir.write(&json!({ "upstreams": [up], "routes": [route("1", "/a", "u1")] }))?;
    let gw = dir.start(GatewayOptions::default()).await?;
    until_http(&gw, "/a", 200).await?;

    // A hot change: /a goes, /b comes.
    dir.write(&json!({ "upstreams": [up], "routes": [route("2", "/b", "u1")] }))?;
    until_http(&gw, "/b", 200).await?;
    assert_eq!(curl_http(&gw, "/a", &[])?.status, 404);

    // One invalid object refuses the whole file: /c is not served either.
    dir.write(&json!({
        "upstreams": [up],
        "routes": [
            route("2", "/b", "u1"),
            route("3", "/c", "u1"),
            { "id": "4", "uri": "/d", "upstream": { "type": "roundrobin", "nodes": {} } }
        ]
    }))?;
    let status = until_refused(&gw, "routes[2].upstream").await?;
    assert_eq!(status["stale"], true, "{status:#}");
    let metrics = gw.metrics().await?;
    assert!(
        metrics.contains("portcullis_config_source_error{source=\"file\"} 1"),
        "a refused file shows in the metrics: {metrics}"
    );
    assert_eq!(curl_http(&gw, "/b", &[])?.status, 200);
    assert_eq!(curl_http(&gw, "/c", &[])?.status, 404, "never half-applied");
    gw.until_logged("refusing the changed standalone file; the previous configuration stays")
        .await?;

    // A file without its end flag (e.g. still being written) is refused too.
    dir.write_text(&format!(
        "{:#}\n",
        json!({ "upstreams": [up], "routes": [route("5", "/e", "u1")] })
    ))?;
    until_refused(&gw, "missing valid end flag").await?;
    gw.until_logged("missing valid end flag").await?;
    assert_eq!(curl_http(&gw, "/e", &[])?.status, 404);
    assert_eq!(curl_http(&gw, "/b", &[])?.status, 200);

    // A valid file again clears the error.
    dir.write(&json!({ "upstreams": [up], "routes": [route("5", "/e", "u1")] }))?;
    until_http(&gw, "/e", 200).await?;
    let status = gw.status().await?;
    assert_eq!(
        status["standalone"]["last_error"],
        Value::Null,
        "{status:#}"
    );
    assert_eq!(status["stale"], false);
    let metrics = gw.metrics().await?;
    assert!(
        metrics.contains("portcullis_config_source_error{source=\"file\"} 0"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn follows_a_symlink_swapped_like_a_configmap() -> harness::Result<()> {
    let echo = EchoServer::start().await?;
    let dir = ConfigDir::new()?;
    let root = dir.dir.path();
    // Kubernetes: apisix.yaml -> ..data/apisix.yaml, ..data -> ..v1; an
    // update writes ..v2 and swaps ..data.
    let version = |name: &str, uri: &str| -> harness::Result<()> {
        let versioned = root.join(name);
        std::fs::create_dir_all(&versioned)?;
        let doc = json!({ "routes": [{
            "id": 1, "uri": uri,
            "upstream": { "type": "roundrobin", "nodes": { echo.node(): 1 } }
        }]});
        std::fs::write(versioned.join("apisix.yaml"), format!("{doc:#}\n#END\n"))?;
        let link = root.join("..data_tmp");
        std::os::unix::fs::symlink(name, &link)?;
        std::fs::rename(&link, root.join("..data"))?;
        Ok(())
    };
    version("..v1", "/one")?;
    std::os::unix::fs::symlink("..data/apisix.yaml", dir.file())?;
    let gw = dir.start(GatewayOptions::default()).await?;
    until_http(&gw, "/one", 200).await?;
    version("..v2", "/two")?;
    until_http(&gw, "/two", 200).await?;
    assert_eq!(curl_http(&gw, "/one", &[])?.status, 404);
    Ok(())
}

#[tokio::test]
async fn a_file_without_end_flag_is_refused_at_start() -> harness::Result<()> {
    let dir = ConfigDir::new()?;
    dir.write_text("routes: []\n")?;
    // Without a backtrace, so that the end of the log is the reason.
    let opts = GatewayOptions {
        env: vec![("RUST_BACKTRACE".into(), "0".into())],
        ..GatewayOptions::default()
    };
    let err = dir
        .start(opts)
        .await
        .expect_err("no end flag: nothing to serve");
    let msg = format!("{err:#}");
    assert!(msg.contains("missing valid end flag"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn environment_variables_are_substituted() -> harness::Result<()> {
    let echo = EchoServer::start().await?;
    let dir = ConfigDir::new()?;
    let port = echo.node().rsplit(':').next().expect("port").to_owned();
    dir.write_text(
        "routes:\n  - id: 1\n    uri: /${{ROUTE_NAME}}/${{ROUTE_VERSION:=v1}}\n    upstream:\n      type: roundrobin\n      nodes:\n        \"127.0.0.1:${{ECHO_PORT}}\": 1\n#END\n",
    )?;
    let opts = GatewayOptions {
        env: vec![
            ("ROUTE_NAME".into(), "orders".into()),
            ("ECHO_PORT".into(), port),
        ],
        ..GatewayOptions::default()
    };
    let gw = dir.start(opts).await?;
    until_http(&gw, "/orders/v1", 200).await?;
    assert_eq!(echo.hits(), 1);

    // A variable the process lacks refuses the change, naming it and where.
    dir.write_text("routes:\n  - id: 1\n    uri: /${{NOT_SET_ANYWHERE}}\n    upstream: {type: roundrobin, nodes: {\"127.0.0.1:1\": 1}}\n#END\n")?;
    until_refused(
        &gw,
        "routes[0].uri: environment variable NOT_SET_ANYWHERE is not set",
    )
    .await?;
    assert_eq!(curl_http(&gw, "/orders/v1", &[])?.status, 200);
    Ok(())
}

/// `gateway seal-key -c CONFIG` with `pem` on standard input.
fn seal_key(config: &Path, pem: &str) -> harness::Result<String> {
    use std::io::Write;
    let mut child = Command::new(gateway_bin()?)
        .args(["seal-key", "-c"])
        .arg(config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pem.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "seal-key failed: {out:?}");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[tokio::test]
async fn private_keys_in_the_file_may_be_sealed_with_the_keyring() -> harness::Result<()> {
    let echo = EchoServer::start().await?;
    let dir = ConfigDir::new()?;
    let ca = Ca::new("Standalone CA");
    let (plain, sealed) = (
        ca.server("plain.test", &["plain.test"]),
        ca.server("sealed.test", &["sealed.test"]),
    );
    let keyring = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=".to_owned();
    let mut plain_ssl_object = plain_ssl("plain.test", &plain);
    plain_ssl_object["id"] = json!("plain");
    let route = json!({ "id": 1, "uri": "/anything",
        "upstream": { "type": "roundrobin", "nodes": { echo.node(): 1 } } });
    dir.write(&json!({ "ssls": [plain_ssl_object], "routes": [route] }))?;
    let gw = dir
        .start(GatewayOptions {
            keyring: vec![keyring],
            ..GatewayOptions::default()
        })
        .await?;
    eventually_status("plain.test with a plain key", 200, || {
        curl_https(&gw, "plain.test", "/anything", &[])
    })
    .await?;

    let sealed_key = seal_key(gw.config_path(), &sealed.key_pem)?;
    assert!(sealed_key.starts_with("$enc:v1:"), "{sealed_key}");
    let mut sealed_ssl = plain_ssl("sealed.test", &sealed);
    sealed_ssl["id"] = json!("sealed");
    sealed_ssl["key"] = json!(sealed_key);
    dir.write(&json!({ "ssls": [plain_ssl_object, sealed_ssl], "routes": [route] }))?;
    eventually_status("sealed.test with a sealed key", 200, || {
        curl_https(&gw, "sealed.test", "/anything", &[])
    })
    .await?;
    assert_eq!(
        CertFacts::served(&gw, Some("sealed.test"))?.subject,
        "CN=sealed.test"
    );
    assert!(!gw.log().contains("PRIVATE KEY"), "no key in the log");
    Ok(())
}

#[tokio::test]
async fn validate_prints_every_problem_with_its_path() -> harness::Result<()> {
    let dir = ConfigDir::new()?;
    let config = dir.dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "deployment:\n  role: data_plane\n  config_provider: yaml\n",
    )?;
    let run = |file: &Path| -> harness::Result<(i32, String)> {
        let out = Command::new(gateway_bin()?)
            .args(["validate", "-c"])
            .arg(&config)
            .arg("--file")
            .arg(file)
            .output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout)?,
        ))
    };
    dir.write_text(
        "upstreams:\n  - {id: u1, type: roundrobin, nodes: {\"127.0.0.1:80\": 1}}\nroutes:\n  - {id: 1, uri: /a, upstream_id: u1}\n  - {id: 2, uri: /b, upstream_id: u9}\n  - {id: 3, uri: /c, upstream: {type: roundrobin, nodes: {}}}\n  - {uri: /d, upstream_id: u1}\n#END\n",
    )?;
    let (code, out) = run(&dir.file())?;
    assert_eq!(code, 1, "{out}");
    for path in [
        "routes[1].upstream_id: ",
        "routes[2].upstream",
        "routes[3].id: ",
    ] {
        assert!(out.contains(path), "{path} missing in:\n{out}");
    }
    assert!(out.contains("3 problem(s)"), "{out}");

    dir.write_text(
        "upstreams:\n  - {id: u1, type: roundrobin, nodes: {\"127.0.0.1:80\": 1}}\nroutes:\n  - {id: 1, uri: /a, upstream_id: u1}\n#END\n",
    )?;
    let (code, out) = run(&dir.file())?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok (1 routes, 1 upstreams, 0 ssls)"), "{out}");
    Ok(())
}
