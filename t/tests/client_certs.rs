//! Client-certificate verification beyond the walkthrough: `client.depth`
//! with intermediates, and TLS session resumption never carrying a verified
//! identity across SNIs or across a CA change.

use std::path::Path;

use harness::fixtures::{
    cert_args, curl_https, eventually_status, path_str, plain_ssl, start_stack, start_two_sites,
    walkthrough_route, walkthrough_ssl, PROPAGATION_TIMEOUT,
};
use harness::pki::Ca;
use harness::{openssl_output, wait_until, Gateway};
use serde_json::{json, Value};

fn mtls_ssl(server: &harness::pki::Leaf, ca: &Ca, depth: Option<u32>) -> Value {
    let mut client = json!({ "ca": ca.cert_pem });
    if let Some(depth) = depth {
        client["depth"] = json!(depth);
    }
    let mut ssl = plain_ssl("test.com", server);
    ssl["client"] = client;
    ssl
}

#[tokio::test]
async fn client_depth_counts_issuers_like_nginx_ssl_verify_depth() -> harness::Result<()> {
    let (_etcd, gw, echo) = start_stack().await?;
    let dir = tempfile::tempdir()?;
    let root = Ca::new("Root CA");
    let inter = root.intermediate("Intermediate CA");
    let server = root.server("test.com", &["test.com"]);
    let (direct_cert, direct_key) = root.client("DIRECT").write(dir.path(), "direct");
    let (chained_cert, chained_key) = inter
        .client("CHAINED")
        .with_chain(&[&inter])
        .write(dir.path(), "chained");
    let direct = cert_args(&direct_cert, &direct_key);
    let chained = cert_args(&chained_cert, &chained_key);

    let admin = gw.admin();
    admin
        .create_all([
            ("ssls/1", mtls_ssl(&server, &root, None)),
            ("routes/1", walkthrough_route(&echo.node())),
        ])
        .await?;
    eventually_status("a client signed by the root", 200, || {
        curl_https(&gw, "test.com", "/anything", &direct)
    })
    .await?;
    let out = curl_https(&gw, "test.com", "/anything", &chained)?;
    assert_eq!(
        out.status, 0,
        "depth 1 (default) must refuse a chain through an intermediate: {out:?}"
    );

    admin
        .put_expecting(
            "/apisix/admin/ssls/1",
            mtls_ssl(&server, &root, Some(2)),
            200,
        )
        .await?;
    let out = eventually_status("an intermediate-signed client at depth 2", 200, || {
        curl_https(&gw, "test.com", "/anything", &chained)
    })
    .await?;
    let body: Value = serde_json::from_str(&out.body)?;
    assert_eq!(
        body["headers"]["x-ssl-client-s-dn"], "CN=CHAINED",
        "{body:#}"
    );
    Ok(())
}

/// One `openssl s_client` request; `session` is read with `-sess_in` when it
/// exists and written with `-sess_out`.
struct SClient<'a> {
    gw: &'a Gateway,
    tls: &'a str,
    sni: &'a str,
    host: &'a str,
    cert: Option<(&'a Path, &'a Path)>,
}

/// What one `s_client` run showed.
#[derive(Debug)]
struct Seen {
    resumed: bool,
    status_200: bool,
    identity: Option<String>,
    output: String,
}

impl SClient<'_> {
    fn run(&self, session: &Path) -> harness::Result<Seen> {
        let connect = self.gw.https_addr().to_string();
        let mut args = vec![
            "s_client",
            self.tls,
            "-connect",
            &connect,
            "-servername",
            self.sni,
            "-ign_eof",
        ];
        if let Some((cert, key)) = self.cert {
            args.extend(["-cert", path_str(cert), "-key", path_str(key)]);
        }
        if session.exists() {
            args.extend(["-sess_in", path_str(session)]);
        }
        args.extend(["-sess_out", path_str(session)]);
        let request = format!(
            "GET /anything HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host
        );
        let out = openssl_output(&args, &request)?;
        let identity = out
            .stdout
            .split(r#""x-ssl-client-s-dn":""#)
            .nth(1)
            .map(|rest| rest.split('"').next().unwrap_or_default().to_owned());
        Ok(Seen {
            resumed: out.stdout.contains("Reused,"),
            status_200: out.stdout.contains("HTTP/1.1 200"),
            identity: identity.filter(|dn| !dn.is_empty()),
            output: format!("{}\n{}", out.stdout, out.stderr),
        })
    }
}

#[tokio::test]
async fn session_resumption_never_carries_an_identity_across_snis_or_a_ca_change(
) -> harness::Result<()> {
    let (_etcd, gw, _echo, pki) = start_two_sites().await?;
    let admin = gw.admin();

    let dir = tempfile::tempdir()?;
    let (cert, key) = (pki.path("client.cer"), pki.path("client.key"));
    let tls_versions = ["-tls1_2", "-tls1_3"];
    for tls in tls_versions {
        let session = dir.path().join(format!("{tls}.pem"));
        let with_cert = SClient {
            gw: &gw,
            tls,
            sni: "test.com",
            host: "test.com",
            cert: Some((&cert, &key)),
        };
        let first = with_cert.run(&session)?;
        assert!(
            first.status_200 && first.identity.as_deref() == Some("CN=CLIENT"),
            "{tls}: {}",
            first.output
        );

        let same_sni = SClient {
            cert: None,
            ..with_cert
        }
        .run(&session)?;
        eprintln!(
            "{tls}: resumption on the same SNI: resumed={}",
            same_sni.resumed
        );
        if same_sni.resumed {
            assert_eq!(
                same_sni.identity.as_deref(),
                Some("CN=CLIENT"),
                "{tls}: {}",
                same_sni.output
            );
        } else {
            assert!(
                !same_sni.status_200,
                "{tls}: a full handshake without a cert must fail: {}",
                same_sni.output
            );
        }

        let other_session = dir.path().join(format!("{tls}-other.pem"));
        std::fs::copy(&session, &other_session)?;
        let other_sni = SClient {
            gw: &gw,
            tls,
            sni: "other.com",
            host: "other.com",
            cert: None,
        };
        let crossed = other_sni.run(&other_session)?;
        assert!(
            crossed.status_200,
            "{tls}: other.com is served, by a full handshake: {}",
            crossed.output
        );
        assert!(
            !crossed.resumed,
            "{tls}: a test.com session must not resume on other.com: {}",
            crossed.output
        );
        assert_eq!(
            crossed.identity, None,
            "{tls}: no identity may cross SNIs: {}",
            crossed.output
        );
    }

    // A new client CA for test.com: the sessions made under the old one are void.
    let new_ca = Ca::new("New CA");
    let mut replaced = walkthrough_ssl(&pki);
    replaced["client"]["ca"] = json!(new_ca.cert_pem);
    admin
        .put_expecting("/apisix/admin/ssls/1", replaced, 200)
        .await?;
    let old_client = cert_args(&cert, &key);
    wait_until("the old CA to be replaced", PROPAGATION_TIMEOUT, || {
        let refused =
            curl_https(&gw, "test.com", "/anything", &old_client).is_ok_and(|o| o.status == 0);
        async move { refused }
    })
    .await?;
    for tls in tls_versions {
        let session = dir.path().join(format!("{tls}.pem"));
        let resumed = SClient {
            gw: &gw,
            tls,
            sni: "test.com",
            host: "test.com",
            cert: None,
        }
        .run(&session)?;
        assert!(
            !resumed.status_200 && resumed.identity.is_none(),
            "{tls}: a session from before the CA change must not be accepted: {}",
            resumed.output
        );
    }
    Ok(())
}
