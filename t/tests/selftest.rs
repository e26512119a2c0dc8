//! Self-tests of the harness itself: if these fail, every other e2e failure
//! is suspect.

use std::time::Duration;

use harness::pki::{Ca, OpensslPki};
use harness::{curl, openssl, wait_until, EchoServer, Etcd};

#[tokio::test]
async fn etcd_keeps_its_data_across_a_restart() -> harness::Result<()> {
    let mut etcd = Etcd::start().await?;
    etcd.etcdctl(&["put", "/harness/k", "v1"])?;
    assert_eq!(
        etcd.etcdctl(&["get", "--print-value-only", "/harness/k"])?
            .trim(),
        "v1"
    );

    etcd.restart().await?;
    assert_eq!(
        etcd.etcdctl(&["get", "--print-value-only", "/harness/k"])?
            .trim(),
        "v1"
    );

    etcd.stop().await;
    assert!(
        etcd.etcdctl(&["--command-timeout=1s", "get", "/harness/k"])
            .is_err(),
        "a stopped etcd must not answer"
    );
    etcd.restart().await?;
    assert_eq!(
        etcd.etcdctl(&["get", "--print-value-only", "/harness/k"])?
            .trim(),
        "v1"
    );
    Ok(())
}

#[tokio::test]
async fn two_etcds_are_independent() -> harness::Result<()> {
    let a = Etcd::start().await?;
    let b = Etcd::start().await?;
    assert_ne!(a.endpoint(), b.endpoint());
    a.etcdctl(&["put", "/harness/only-in-a", "1"])?;
    assert_eq!(
        b.etcdctl(&["get", "--print-value-only", "/harness/only-in-a"])?
            .trim(),
        ""
    );
    Ok(())
}

#[tokio::test]
async fn echo_server_reflects_requests_to_curl() -> harness::Result<()> {
    let echo = EchoServer::start().await?;
    let url = format!("http://{}/anything/x?y=1", echo.node());
    let out = curl(&[
        "-H",
        "X-Test: a",
        "-H",
        "X-Test: b",
        "--data",
        "hello",
        &url,
    ])?;
    assert_eq!(out.status, 200, "{out:?}");
    let body: serde_json::Value = serde_json::from_str(&out.body)?;
    assert_eq!(body["method"], "POST");
    assert_eq!(body["uri"], "/anything/x?y=1");
    assert_eq!(body["headers"]["x-test"], "a, b");
    assert_eq!(body["body"], "hello");
    assert_eq!(echo.hits(), 1);
    Ok(())
}

#[tokio::test]
async fn curl_reports_status_zero_without_a_response() -> harness::Result<()> {
    let port = harness::free_port();
    let out = curl(&[&format!("http://127.0.0.1:{port}/")])?;
    assert_eq!(out.status, 0, "{out:?}");
    assert_ne!(out.exit_code, 0, "{out:?}");
    Ok(())
}

#[tokio::test]
async fn wait_until_times_out_with_the_awaited_condition() {
    let err = wait_until("the impossible", Duration::from_millis(60), || async {
        false
    })
    .await
    .expect_err("must time out");
    assert!(err.to_string().contains("the impossible"), "{err}");
}

#[test]
fn walkthrough_pki_is_x509_version_1_as_the_docs_make_it() -> harness::Result<()> {
    let pki = OpensslPki::walkthrough()?;
    for file in ["ca.cer", "server.cer", "client.cer"] {
        let text = openssl(&["x509", "-noout", "-text"], &pki.read(file))?;
        assert!(
            text.contains("Version: 1 (0x0)"),
            "{file} is not v1:\n{text}"
        );
    }
    let subject = openssl(
        &["x509", "-noout", "-subject", "-nameopt", "RFC2253"],
        &pki.read("client.cer"),
    )?;
    assert_eq!(subject.trim(), "subject=CN=CLIENT");
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(pki.path("ca.cer"))
        .arg(pki.path("client.cer"))
        .output()?;
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    Ok(())
}

#[test]
fn rcgen_pki_verifies_with_openssl() -> harness::Result<()> {
    let ca = Ca::new("Harness CA");
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem)?;
    let (server, _) = ca
        .server("test.com", &["test.com"])
        .write(dir.path(), "server");
    let (client, _) = ca.client("CLIENT").write(dir.path(), "client");
    for (cert, purpose) in [(server, "sslserver"), (client, "sslclient")] {
        let out = std::process::Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(dir.path().join("ca.crt"))
            .arg(&cert)
            .output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let other = Ca::new("Harness CA");
    assert_ne!(
        other.cert_pem, ca.cert_pem,
        "two CAs must have different keys"
    );
    Ok(())
}

#[tokio::test]
async fn etcd_revision_and_compaction() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let before = etcd.revision()?;
    etcd.etcdctl(&["put", "/harness/r", "1"])?;
    etcd.etcdctl(&["put", "/harness/r", "2"])?;
    assert_eq!(etcd.revision()?, before + 2);
    let compacted = etcd.compact()?;
    let old = etcd.etcdctl(&["get", "/harness/r", &format!("--rev={before}")]);
    assert!(
        old.is_err_and(|e| e.to_string().contains("compacted")),
        "history before {compacted} must be gone"
    );
    Ok(())
}
