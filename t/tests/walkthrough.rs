//! The APISIX client-mTLS walkthrough, verbatim: the docs' openssl commands
//! (X.509 v1 certificates), the docs' admin calls, the docs' curl commands.

use harness::fixtures::{
    cert_args, create_walkthrough, curl_https, eventually_status, path_str, start_stack, CertFacts,
};
use harness::pki::{Ca, OpensslPki};
use harness::{openssl_output, EchoServer, Etcd, Gateway};
use serde_json::Value;

/// etcd, a gateway, an upstream and the walkthrough's PKI, SSL object and route.
struct Walkthrough {
    pki: OpensslPki,
    echo: EchoServer,
    gw: Gateway,
    _etcd: Etcd,
}

impl Walkthrough {
    async fn start() -> harness::Result<Walkthrough> {
        let (etcd, gw, echo) = start_stack().await?;
        let pki = OpensslPki::walkthrough()?;
        create_walkthrough(&gw.admin(), &pki, &echo.node()).await?;
        Ok(Walkthrough {
            pki,
            echo,
            gw,
            _etcd: etcd,
        })
    }

    /// The walkthrough's curl: `--cert ./client.cer --key ./client.key`, plus `extra`.
    fn curl_with_client_cert(&self, extra: &[&str]) -> harness::Result<harness::CurlOutput> {
        let cert = self.pki.path("client.cer");
        let key = self.pki.path("client.key");
        let args = [&cert_args(&cert, &key)[..], extra].concat();
        curl_https(&self.gw, "test.com", "/anything", &args)
    }

    /// Waits until the walkthrough request succeeds; returns its response.
    async fn until_served(&self) -> harness::Result<harness::CurlOutput> {
        eventually_status("the walkthrough request to succeed", 200, || {
            self.curl_with_client_cert(&[])
        })
        .await
    }
}

#[tokio::test]
async fn client_identity_reaches_the_upstream_as_nginx_formats_it() -> harness::Result<()> {
    let w = Walkthrough::start().await?;
    let out = w.until_served().await?;
    let body: Value = serde_json::from_str(&out.body)?;
    let headers = &body["headers"];
    let expected = CertFacts::of(&w.pki.read("client.cer"))?;
    assert_eq!(
        headers["x-ssl-client-fingerprint"],
        expected.fingerprint.as_str(),
        "{body:#}"
    );
    assert_eq!(
        headers["x-ssl-client-serial"],
        expected.serial.as_str(),
        "{body:#}"
    );
    assert_eq!(headers["x-ssl-client-s-dn"], "CN=CLIENT", "{body:#}");
    assert_eq!(expected.subject, "CN=CLIENT");
    assert_eq!(headers["x-forwarded-proto"], "https", "{body:#}");
    assert!(
        headers["x-forwarded-for"]
            .as_str()
            .is_some_and(|v| v.contains("127.0.0.1")),
        "{body:#}"
    );
    assert!(
        headers["x-forwarded-host"]
            .as_str()
            .is_some_and(|v| v.starts_with("test.com")),
        "{body:#}"
    );
    assert_eq!(body["uri"], "/anything");
    assert_eq!(w.echo.hits(), 1);
    Ok(())
}

#[tokio::test]
async fn walkthrough_works_over_http1_and_http2() -> harness::Result<()> {
    let w = Walkthrough::start().await?;
    w.until_served().await?;
    for (flag, status_line) in [("--http1.1", "< HTTP/1.1 200"), ("--http2", "< HTTP/2 200")] {
        let out = w.curl_with_client_cert(&[flag, "-v"])?;
        assert_eq!(out.status, 200, "{flag}: {out:?}");
        assert!(out.stderr.contains(status_line), "{flag}: {}", out.stderr);
    }
    Ok(())
}

#[tokio::test]
async fn handshake_without_a_client_certificate_is_refused() -> harness::Result<()> {
    let w = Walkthrough::start().await?;
    w.until_served().await?;
    let out = curl_https(&w.gw, "test.com", "/anything", &[])?;
    assert_eq!(
        out.status, 0,
        "no client cert must fail the handshake: {out:?}"
    );
    assert_ne!(out.exit_code, 0, "{out:?}");
    assert_eq!(w.echo.hits(), 1, "nothing may reach the upstream");
    Ok(())
}

#[tokio::test]
async fn client_certificates_from_other_cas_are_refused() -> harness::Result<()> {
    let w = Walkthrough::start().await?;
    w.until_served().await?;
    let dir = tempfile::tempdir()?;

    // Another run of the same commands: a CA with the same name (CN=ROOTCA) but another key.
    let impostor = OpensslPki::walkthrough()?;
    let (cert, key) = (impostor.path("client.cer"), impostor.path("client.key"));
    // A v3 chain from an unrelated CA.
    let (v3_cert, v3_key) = Ca::new("Other CA")
        .client("CLIENT")
        .write(dir.path(), "other");
    // A self-signed client certificate.
    let self_signed = (impostor.path("ca.cer"), impostor.path("ca.key"));

    for (what, cert, key) in [
        ("a v1 client cert from a same-named CA", &cert, &key),
        ("a v3 client cert from another CA", &v3_cert, &v3_key),
        ("a self-signed cert", &self_signed.0, &self_signed.1),
    ] {
        let out = curl_https(&w.gw, "test.com", "/anything", &cert_args(cert, key))?;
        assert_eq!(out.status, 0, "{what} must fail the handshake: {out:?}");
        assert_ne!(out.exit_code, 0, "{what}: {out:?}");
    }
    assert_eq!(w.echo.hits(), 1, "nothing may reach the upstream");
    Ok(())
}

#[tokio::test]
async fn the_ca_itself_is_not_a_client_identity() -> harness::Result<()> {
    let w = Walkthrough::start().await?;
    w.until_served().await?;
    let (ca, ca_key) = (w.pki.path("ca.cer"), w.pki.path("ca.key"));
    let out = curl_https(&w.gw, "test.com", "/anything", &cert_args(&ca, &ca_key))?;
    assert_eq!(
        out.status, 0,
        "the trust anchor presented as a leaf must be refused: {out:?}"
    );
    Ok(())
}

#[tokio::test]
async fn openssl_s_client_sending_the_ca_too_is_served() -> harness::Result<()> {
    let w = Walkthrough::start().await?;
    w.until_served().await?;
    let connect = w.gw.https_addr().to_string();
    let request = "GET /anything HTTP/1.1\r\nHost: test.com\r\nConnection: close\r\n\r\n";
    for tls in ["-tls1_2", "-tls1_3"] {
        let out = openssl_output(
            &[
                "s_client",
                tls,
                "-connect",
                &connect,
                "-servername",
                "test.com",
                "-cert",
                path_str(&w.pki.path("client.cer")),
                "-key",
                path_str(&w.pki.path("client.key")),
                "-CAfile",
                path_str(&w.pki.path("ca.cer")),
                "-ign_eof",
            ],
            request,
        )?;
        assert!(
            out.stdout.contains("HTTP/1.1 200"),
            "{tls}: {}\n{}",
            out.stdout,
            out.stderr
        );
        assert!(out.stdout.contains("CN=CLIENT"), "{tls}: {}", out.stdout);
    }
    Ok(())
}
