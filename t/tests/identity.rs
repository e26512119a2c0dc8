//! Client identity plugins end to end: the Kong `mtls-auth` / `mtls-acl`
//! walkthrough, `mtls-acl` on a certificate attribute, the WSO2 APK
//! per-route mTLS walkthrough (pinned certificates, header-passed
//! certificates), two routes with different CAs on one SNI,
//! `forward-client-cert` in every mode, CRLs updated through the admin API,
//! `crl_mode` over a chain through an intermediate, `unknown_status`, the
//! certificate headers (both ways) decoded back to the exact DER, and a
//! front proxy trusted by its pinned certificate.

use std::path::Path;

use harness::cert_text;
use harness::client_pki::{ClientCa, ClientSpec};
use harness::fixtures::{curl_https, eventually_status, start_stack};
use harness::pki::Leaf;
use harness::{openssl, openssl_output, CurlOutput, EchoServer, Etcd, Gateway};
use serde_json::{json, Value};

/// A client certificate and key written to files, as curl takes them.
struct Files {
    cert: String,
    key: String,
}

impl Files {
    fn write(leaf: &Leaf, dir: &Path, name: &str) -> Files {
        let (cert, key) = leaf.write(dir, name);
        let utf8 = |p: &Path| p.to_str().expect("temporary paths are UTF-8").to_owned();
        Files {
            cert: utf8(&cert),
            key: utf8(&key),
        }
    }

    /// `--cert FILE --key FILE` followed by `extra`.
    fn with<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--cert", self.cert.as_str(), "--key", self.key.as_str()];
        args.extend_from_slice(extra);
        args
    }
}

/// etcd, a gateway and an echo upstream, shared by the cases of one test.
struct Stack {
    gw: Gateway,
    echo: EchoServer,
    _etcd: Etcd,
}

impl Stack {
    async fn start() -> harness::Result<Stack> {
        let (etcd, gw, echo) = start_stack().await?;
        Ok(Stack {
            gw,
            echo,
            _etcd: etcd,
        })
    }

    /// PUTs `body` at `/apisix/admin/<path>`, expecting `status`.
    async fn put(&self, path: &str, body: Value, status: u16) -> harness::Result<()> {
        self.gw
            .admin()
            .put_expecting(&format!("/apisix/admin/{path}"), body, status)
            .await?;
        Ok(())
    }

    /// A route for `uri` on `host` with `plugins`, to the echo upstream.
    fn route(&self, host: &str, uri: &str, plugins: Value) -> Value {
        json!({
            "host": host,
            "uri": uri,
            "plugins": plugins,
            "upstream": {"nodes": {self.echo.node(): 1}, "type": "roundrobin"}
        })
    }

    fn curl(&self, host: &str, path: &str, args: &[&str]) -> harness::Result<CurlOutput> {
        curl_https(&self.gw, host, path, args)
    }
}

fn ssl(host: &str, server: &Leaf, client: Option<Value>) -> Value {
    let mut ssl = json!({"sni": host, "cert": server.cert_pem, "key": server.key_pem});
    if let Some(client) = client {
        ssl["client"] = client;
    }
    ssl
}

/// The request headers the echo upstream received.
fn upstream_headers(out: &CurlOutput) -> Value {
    let body: Value = serde_json::from_str(&out.body)
        .unwrap_or_else(|e| panic!("not an echo response ({e}): {out:?}"));
    body["headers"].clone()
}

/// SHA-256 of the certificate's DER, lowercase hex, as `openssl` prints it.
fn sha256(cert_pem: &str) -> String {
    let out = openssl(&["x509", "-noout", "-fingerprint", "-sha256"], cert_pem).unwrap();
    let hex = out
        .trim()
        .split_once('=')
        .map(|(_, v)| v)
        .unwrap_or_default();
    hex.replace(':', "").to_lowercase()
}

#[tokio::test]
async fn kong_mtls_auth_and_acl_walkthrough() -> harness::Result<()> {
    let stack = Stack::start().await?;
    let dir = tempfile::tempdir()?;
    let ca = ClientCa::new("Local CA");
    let client1 = Files::write(
        &ca.client("client1", "Callista Enterprise AB"),
        dir.path(),
        "client1",
    );
    let client2 = Files::write(
        &ca.client("client2", "Callista Enterprise AB"),
        dir.path(),
        "client2",
    );
    let other = Files::write(&ca.client("other", "Other Corp"), dir.path(), "other");
    // Kong's `nginx_proxy_ssl_verify_client = optional`: every path may go
    // without a certificate at the handshake; the plugins decide.
    let client = json!({"ca": ca.cert_pem, "skip_mtls_uri_regex": [".*"]});
    let plugins = json!({
        "mtls-auth": {
            "upstream_cert_s_dn_header": "X-Client-Cert-Dn",
            "upstream_cert_cn_header": "X-Client-Cert-San",
            "upstream_cert_org_header": "X-Client-Cert-Organization"
        },
        "mtls-acl": {
            "certificate_header_name": "X-Client-Cert-Organization",
            "allow": ["Callista Enterprise AB"]
        }
    });
    stack
        .gw
        .admin()
        .create_all([
            (
                "ssls/1",
                ssl("kong.test", &ca.server("kong.test"), Some(client)),
            ),
            ("routes/1", stack.route("kong.test", "/mtls/*", plugins)),
        ])
        .await?;

    let out = eventually_status("client1 through mtls-auth and mtls-acl", 200, || {
        stack.curl("kong.test", "/mtls/api/", &client1.with(&[]))
    })
    .await?;
    let headers = upstream_headers(&out);
    assert_eq!(
        headers["x-client-cert-dn"],
        "CN=client1,O=Callista Enterprise AB,ST=Sweden,C=SE"
    );
    assert_eq!(headers["x-client-cert-san"], "client1");
    assert_eq!(
        headers["x-client-cert-organization"],
        "Callista Enterprise AB"
    );

    let out = stack.curl("kong.test", "/mtls/api/", &client2.with(&[]))?;
    assert_eq!(out.status, 200, "{out:?}");
    let headers = upstream_headers(&out);
    assert_eq!(
        headers["x-client-cert-dn"],
        "CN=client2,O=Callista Enterprise AB,ST=Sweden,C=SE"
    );
    assert_eq!(headers["x-client-cert-san"], "client2");

    let out = stack.curl("kong.test", "/mtls/api/", &other.with(&[]))?;
    assert_eq!(out.status, 403, "{out:?}");
    assert_eq!(out.body, r#"{"message":"You cannot consume this service"}"#);

    let out = stack.curl("kong.test", "/mtls/api/", &[])?;
    assert_eq!(out.status, 401, "{out:?}");
    assert_eq!(
        out.body,
        r#"{"error":"invalid_request","error_description":"mTLS client not provided or invalid"}"#
    );

    // A client cannot speak for the gateway: injected headers are replaced
    // (and the ACL never reads the client's own organization header).
    let injected = client1.with(&["-H", "X-Client-Cert-Dn: CN=admin,O=Callista Enterprise AB"]);
    let out = stack.curl("kong.test", "/mtls/api/", &injected)?;
    assert_eq!(
        upstream_headers(&out)["x-client-cert-dn"],
        "CN=client1,O=Callista Enterprise AB,ST=Sweden,C=SE"
    );
    let forged_org = other.with(&["-H", "X-Client-Cert-Organization: Callista Enterprise AB"]);
    assert_eq!(
        stack.curl("kong.test", "/mtls/api/", &forged_org)?.status,
        403
    );

    // The admin API refuses an ACL with both lists, and stores nothing.
    let both = stack.route(
        "kong.test",
        "/both",
        json!({"mtls-acl": {"attribute": "subject_o", "allow": ["a"], "deny": ["b"]}}),
    );
    let reply = stack.gw.admin().put("/apisix/admin/routes/2", both).await?;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(reply.text.contains("allow"), "{}", reply.text);
    assert_eq!(
        stack.gw.admin().get("/apisix/admin/routes/2").await?.status,
        404
    );
    Ok(())
}

#[tokio::test]
async fn apk_per_route_mtls_with_pinned_and_header_passed_certificates() -> harness::Result<()> {
    let stack = Stack::start().await?;
    let dir = tempfile::tempdir()?;
    let ca = ClientCa::new("APK CA");
    let pinned = [ca.client("pinned-1", "WSO2"), ca.client("pinned-2", "WSO2")];
    let pinned_files: Vec<Files> = pinned
        .iter()
        .enumerate()
        .map(|(i, leaf)| Files::write(leaf, dir.path(), &format!("pinned{i}")))
        .collect();
    let unpinned = Files::write(
        &ca.client("valid-but-not-pinned", "WSO2"),
        dir.path(),
        "unpinned",
    );
    let mandatory = json!({"client-cert-auth": {
        "required": "mandatory",
        "certificates": [pinned[0].cert_pem, pinned[1].cert_pem],
        "cert_header": {
            "name": "X-WSO2-CLIENT-CERTIFICATE",
            "trusted_sources": ["127.0.0.2/32"]
        }
    }});
    let optional = json!({"client-cert-auth": {"required": "optional", "ca": [ca.cert_pem]}});
    stack
        .gw
        .admin()
        .create_all([
            ("ssls/1", ssl("apk.test", &ca.server("apk.test"), None)),
            ("routes/1", stack.route("apk.test", "/employee", mandatory)),
            ("routes/2", stack.route("apk.test", "/public", optional)),
        ])
        .await?;

    for files in &pinned_files {
        eventually_status("a pinned certificate", 200, || {
            stack.curl("apk.test", "/employee", &files.with(&[]))
        })
        .await?;
    }
    let out = stack.curl("apk.test", "/employee", &unpinned.with(&["-D", "-"]))?;
    assert_eq!(out.status, 401, "{out:?}");
    assert!(
        out.body
            .to_lowercase()
            .contains("www-authenticate: mutual ssl realm=\"portcullis\""),
        "{out:?}"
    );
    assert_eq!(stack.curl("apk.test", "/employee", &[])?.status, 401);
    eventually_status("no certificate on the optional route", 200, || {
        stack.curl("apk.test", "/public", &[])
    })
    .await?;
    assert_eq!(
        stack
            .curl("apk.test", "/public", &unpinned.with(&[]))?
            .status,
        200
    );
    let stranger = Files::write(
        &ClientCa::new("Stranger").client("x", "Y"),
        dir.path(),
        "stranger",
    );
    assert_eq!(
        stack
            .curl("apk.test", "/public", &stranger.with(&[]))?
            .status,
        401
    );

    // A load balancer that terminated TLS passes the certificate in a header.
    let header = format!(
        "X-WSO2-CLIENT-CERTIFICATE: {}",
        pinned[0].cert_pem.trim().replace('\n', " ")
    );
    let from_lb = stack.curl(
        "apk.test",
        "/employee",
        &["--interface", "127.0.0.2", "-H", &header],
    )?;
    assert_eq!(from_lb.status, 200, "{from_lb:?}");
    assert!(upstream_headers(&from_lb)["x-wso2-client-certificate"].is_string());
    let from_anyone = stack.curl("apk.test", "/employee", &["-H", &header])?;
    assert_eq!(
        from_anyone.status, 401,
        "an untrusted source's header is ignored: {from_anyone:?}"
    );

    // Pinned PEMs are parsed by the admin API.
    let broken = json!({"client-cert-auth": {"certificates": ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]}});
    let reply = stack
        .gw
        .admin()
        .put(
            "/apisix/admin/routes/3",
            stack.route("apk.test", "/x", broken),
        )
        .await?;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(
        reply
            .text
            .contains("plugins.client-cert-auth.certificates[0]"),
        "{}",
        reply.text
    );
    Ok(())
}

#[tokio::test]
async fn routes_on_one_sni_trust_different_cas_in_one_handshake() -> harness::Result<()> {
    let stack = Stack::start().await?;
    let dir = tempfile::tempdir()?;
    let (ca_a, ca_b) = (ClientCa::new("Team A CA"), ClientCa::new("Team B CA"));
    let alice = Files::write(&ca_a.client("alice", "Team A"), dir.path(), "alice");
    let bob = Files::write(&ca_b.client("bob", "Team B"), dir.path(), "bob");
    let per_route_ca = |uri: &str, ca: &ClientCa| {
        let plugins = json!({
            "client-cert-auth": {"ca": [ca.cert_pem]},
            "mtls-auth": {"upstream_cert_s_dn_header": "X-Client-Dn"}
        });
        stack.route("shared.test", uri, plugins)
    };
    stack
        .gw
        .admin()
        .create_all([
            (
                "ssls/1",
                ssl("shared.test", &ca_a.server("shared.test"), None),
            ),
            ("routes/1", per_route_ca("/a", &ca_a)),
            ("routes/2", per_route_ca("/b", &ca_b)),
        ])
        .await?;
    eventually_status("alice on route A", 200, || {
        stack.curl("shared.test", "/a", &alice.with(&[]))
    })
    .await?;
    eventually_status("bob on route B", 200, || {
        stack.curl("shared.test", "/b", &bob.with(&[]))
    })
    .await?;
    // A route without an mTLS requirement on that SNI is unaffected.
    stack
        .put(
            "routes/3",
            stack.route("shared.test", "/open", json!({})),
            201,
        )
        .await?;
    eventually_status("the route without mTLS, without a certificate", 200, || {
        stack.curl("shared.test", "/open", &[])
    })
    .await?;
    let out = stack.curl("shared.test", "/a", &alice.with(&[]))?;
    assert_eq!(
        upstream_headers(&out)["x-client-dn"],
        "CN=alice,O=Team A,ST=Sweden,C=SE"
    );

    // One connection, one handshake, two requests: each route judges the
    // same certificate against its own CA.
    let connect = stack.gw.https_addr().to_string();
    for (who, accepted, refused) in [(&alice, "/a", "/b"), (&bob, "/b", "/a")] {
        let requests = format!(
            "GET {accepted} HTTP/1.1\r\nHost: shared.test\r\n\r\n\
             GET {refused} HTTP/1.1\r\nHost: shared.test\r\nConnection: close\r\n\r\n"
        );
        let args = [
            "s_client",
            "-connect",
            &connect,
            "-servername",
            "shared.test",
            "-cert",
            &who.cert,
            "-key",
            &who.key,
            "-ign_eof",
        ];
        let out = openssl_output(&args, &requests)?;
        // Bodies carry no newline, so a status line may follow one directly.
        let statuses: Vec<&str> = out
            .stdout
            .match_indices("HTTP/1.1 ")
            .filter_map(|(at, _)| out.stdout.get(at..at + 12))
            .collect();
        assert_eq!(statuses, ["HTTP/1.1 200", "HTTP/1.1 401"], "{}", out.stdout);
        // The CertificateRequest listed both routes' CAs.
        let names = out
            .stdout
            .split("Acceptable client certificate CA names")
            .nth(1)
            .unwrap_or_default();
        assert!(
            names.contains("Team A CA") && names.contains("Team B CA"),
            "{}",
            out.stdout
        );
    }
    Ok(())
}

#[tokio::test]
async fn forward_client_cert_in_every_mode() -> harness::Result<()> {
    let stack = Stack::start().await?;
    let dir = tempfile::tempdir()?;
    let ca = ClientCa::new("Mesh CA");
    let workload = ca.client_with(
        "payments",
        &ClientSpec {
            uris: &["spiffe://example.org/ns/prod/sa/payments"],
            ..ClientSpec::default()
        },
    );
    let hash = sha256(&workload.cert_pem);
    let files = Files::write(&workload, dir.path(), "workload");
    let client = json!({"ca": ca.cert_pem, "skip_mtls_uri_regex": [".*"]});
    stack
        .put(
            "ssls/1",
            ssl("mesh.test", &ca.server("mesh.test"), Some(client)),
            201,
        )
        .await?;
    let modes = [
        "sanitize",
        "forward_only",
        "append_forward",
        "sanitize_set",
        "always_forward_only",
    ];
    for (i, mode) in modes.iter().enumerate() {
        let plugins = json!({"forward-client-cert": {
            "mode": mode,
            "format": "both",
            "details": ["subject", "uri"],
            "by": "spiffe://example.org/gateway"
        }});
        stack
            .put(
                &format!("routes/{i}"),
                stack.route("mesh.test", &format!("/{mode}"), plugins),
                201,
            )
            .await?;
    }
    let rfc9440 = json!({"forward-client-cert": {"mode": "sanitize_set", "format": "rfc9440"}});
    stack
        .put(
            "routes/rfc9440",
            stack.route("mesh.test", "/rfc9440", rfc9440),
            201,
        )
        .await?;
    stack
        .put(
            "routes/plain",
            stack.route("mesh.test", "/plain", json!({})),
            201,
        )
        .await?;
    eventually_status("the last route", 200, || {
        stack.curl("mesh.test", "/rfc9440", &[])
    })
    .await?;

    let spoofed = "By=spiffe://evil;Hash=00;Subject=\"CN=admin\"";
    let spoof_header = format!("X-Forwarded-Client-Cert: {spoofed}");
    let spoof = [
        "-H",
        spoof_header.as_str(),
        "-H",
        "Client-Cert: :AAAA:",
        "-H",
        "Client-Cert-Chain: :AAAA:",
    ];
    // The XFCC the upstream got; RFC 9440 headers a client sends are never
    // forwarded, whatever the mode (RFC 9440 §4).
    let xfcc = |mode: &str, client: Option<&Files>| -> harness::Result<Value> {
        let args = match client {
            Some(files) => files.with(&spoof),
            None => spoof.to_vec(),
        };
        let out = stack.curl("mesh.test", &format!("/{mode}"), &args)?;
        assert_eq!(out.status, 200, "{mode}: {out:?}");
        let headers = upstream_headers(&out);
        for name in ["client-cert", "client-cert-chain"] {
            assert_ne!(headers[name], ":AAAA:", "{mode}: the client's {name}");
        }
        Ok(headers["x-forwarded-client-cert"].clone())
    };
    let ours = format!(
        "By=spiffe://example.org/gateway;Hash={hash};Subject=\"CN=payments\";\
         URI=spiffe://example.org/ns/prod/sa/payments"
    );
    let expected = [
        ("sanitize", true, Value::Null),
        ("sanitize", false, Value::Null),
        ("forward_only", true, json!(spoofed)),
        ("forward_only", false, Value::Null),
        ("append_forward", true, json!(format!("{spoofed},{ours}"))),
        ("append_forward", false, Value::Null),
        ("sanitize_set", true, json!(ours)),
        ("sanitize_set", false, Value::Null),
        ("always_forward_only", false, json!(spoofed)),
    ];
    for (mode, with_cert, want) in &expected {
        assert_eq!(
            xfcc(mode, with_cert.then_some(&files))?,
            *want,
            "{mode}, certificate: {with_cert}"
        );
    }
    // Only verified certificates are forwarded: one from another CA (which
    // the optional handshake lets through) counts as none.
    let stranger = Files::write(
        &ClientCa::new("Stranger CA").client("payments", "Y"),
        dir.path(),
        "stranger",
    );
    for (mode, _, want) in expected.iter().filter(|(_, with_cert, _)| !with_cert) {
        assert_eq!(
            xfcc(mode, Some(&stranger))?,
            *want,
            "{mode}, an unverified certificate"
        );
    }

    let out = stack.curl(
        "mesh.test",
        "/rfc9440",
        &files.with(&["-H", "Client-Cert: :AAAA:"]),
    )?;
    let headers = upstream_headers(&out);
    let der_b64: String = workload
        .cert_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    assert_eq!(
        headers["client-cert"],
        format!(":{der_b64}:"),
        "{headers:#}"
    );
    assert!(headers["x-forwarded-client-cert"].is_null(), "{headers:#}");
    let out = stack.curl("mesh.test", "/rfc9440", &["-H", "Client-Cert: :AAAA:"])?;
    assert!(upstream_headers(&out)["client-cert"].is_null());

    // Without the plugin, a route passes on none of the client's own.
    let out = stack.curl("mesh.test", "/plain", &files.with(&spoof))?;
    let headers = upstream_headers(&out);
    for name in [
        "x-forwarded-client-cert",
        "client-cert",
        "client-cert-chain",
    ] {
        assert!(
            headers[name].is_null(),
            "{name} reached the upstream: {headers:#}"
        );
    }
    // `Connection` cannot take away what the gateway sets (HTTP/1.1 only:
    // HTTP/2 has no `Connection`).
    let out = stack.curl(
        "mesh.test",
        "/sanitize_set",
        &files.with(&[
            "--http1.1",
            "-H",
            "Connection: x-forwarded-client-cert, client-cert",
        ]),
    )?;
    let headers = upstream_headers(&out);
    assert_eq!(
        headers["x-forwarded-client-cert"],
        json!(ours),
        "{headers:#}"
    );
    assert_eq!(
        headers["client-cert"],
        format!(":{der_b64}:"),
        "{headers:#}"
    );
    Ok(())
}

#[tokio::test]
async fn crls_refuse_revoked_certificates_and_update_without_restart() -> harness::Result<()> {
    let stack = Stack::start().await?;
    let dir = tempfile::tempdir()?;
    let ca = ClientCa::new("Revoking CA");
    let leaf = |cn: &str, serial: u64| {
        let spec = ClientSpec {
            serial: Some(serial),
            ..ClientSpec::default()
        };
        Files::write(&ca.client_with(cn, &spec), dir.path(), cn)
    };
    let (revoked, fine) = (leaf("revoked", 1001), leaf("fine", 1002));

    // At the handshake, on an SNI that requires a certificate.
    let handshake_ssl = |serials: &[u64]| {
        let client = json!({"ca": ca.cert_pem, "crl": [ca.crl(serials)]});
        ssl("crl.test", &ca.server("crl.test"), Some(client))
    };
    stack.put("ssls/1", handshake_ssl(&[1001]), 201).await?;
    stack
        .put("routes/1", stack.route("crl.test", "/*", json!({})), 201)
        .await?;
    eventually_status("an unrevoked certificate", 200, || {
        stack.curl("crl.test", "/", &fine.with(&[]))
    })
    .await?;
    let out = stack.curl("crl.test", "/", &revoked.with(&[]))?;
    assert_eq!(
        out.status, 0,
        "a revoked certificate fails the handshake: {out:?}"
    );

    // An invalid CRL is refused and changes nothing.
    let admin = stack.gw.admin();
    let stored_crl = |reply: harness::AdminResponse| reply.body["value"]["client"]["crl"].clone();
    let before = stored_crl(admin.get("/apisix/admin/ssls/1").await?);
    let mut broken = handshake_ssl(&[1001]);
    broken["client"]["crl"] = json!(["-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"]);
    let reply = admin.put("/apisix/admin/ssls/1", broken).await?;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(reply.text.contains("client.crl[0]"), "{}", reply.text);
    assert!(before.is_array(), "the stored CRL is listed: {before}");
    assert_eq!(stored_crl(admin.get("/apisix/admin/ssls/1").await?), before);

    stack
        .put("ssls/1", handshake_ssl(&[1001, 1002]), 200)
        .await?;
    eventually_status("the new CRL at the handshake", 0, || {
        stack.curl("crl.test", "/", &fine.with(&[]))
    })
    .await?;

    // Per route, on an SNI that does not require a certificate.
    stack
        .put(
            "ssls/2",
            ssl("route-crl.test", &ca.server("route-crl.test"), None),
            201,
        )
        .await?;
    let route = |serials: &[u64]| {
        let plugins = json!({"client-cert-auth": {"ca": [ca.cert_pem], "crl": [ca.crl(serials)]}});
        stack.route("route-crl.test", "/*", plugins)
    };
    stack.put("routes/2", route(&[1001]), 201).await?;
    eventually_status("an unrevoked certificate on the route", 200, || {
        stack.curl("route-crl.test", "/", &fine.with(&[]))
    })
    .await?;
    assert_eq!(
        stack
            .curl("route-crl.test", "/", &revoked.with(&[]))?
            .status,
        401
    );
    stack.put("routes/2", route(&[1001, 1002]), 200).await?;
    eventually_status("the new CRL on the route", 401, || {
        stack.curl("route-crl.test", "/", &fine.with(&[]))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn mtls_acl_on_a_certificate_attribute_refuses_before_the_upstream() -> harness::Result<()> {
    let stack = Stack::start().await?;
    let dir = tempfile::tempdir()?;
    let ca = ClientCa::new("Workload CA");
    let workload = |cn: &str, uris: &[&str]| {
        let spec = ClientSpec {
            uris,
            ..ClientSpec::default()
        };
        Files::write(&ca.client_with(cn, &spec), dir.path(), cn)
    };
    let payments = workload("payments", &["spiffe://example.org/ns/prod/sa/payments"]);
    let billing = workload("billing", &["spiffe://example.org/ns/prod/sa/billing"]);
    let no_uri = workload("no-uri", &[]);
    // Required at the handshake, so every request carries a certificate the
    // gateway verified: the ACL alone decides, on the certificate itself.
    let client = json!({"ca": ca.cert_pem});
    let acl = json!({"mtls-acl": {
        "attribute": "san_uri",
        "allow": ["spiffe://example.org/ns/prod/sa/payments"]
    }});
    stack
        .gw
        .admin()
        .create_all([
            (
                "ssls/1",
                ssl("acl.test", &ca.server("acl.test"), Some(client)),
            ),
            ("routes/1", stack.route("acl.test", "/pay/*", acl)),
        ])
        .await?;
    let out = eventually_status("the allowed SPIFFE ID", 200, || {
        stack.curl("acl.test", "/pay/invoice", &payments.with(&[]))
    })
    .await?;
    let echoed: Value = serde_json::from_str(&out.body)?;
    assert_eq!(echoed["uri"], "/pay/invoice", "{out:?}");

    let reached = stack.echo.hits();
    for (who, files) in [("another SPIFFE ID", &billing), ("no URI SAN", &no_uri)] {
        let out = stack.curl("acl.test", "/pay/invoice", &files.with(&[]))?;
        assert_eq!(out.status, 403, "{who}: {out:?}");
        assert_eq!(
            out.body, r#"{"message":"You cannot consume this service"}"#,
            "{who}"
        );
    }
    assert_eq!(
        stack.echo.hits(),
        reached,
        "a refused request must not reach the upstream"
    );
    let out = stack.curl("acl.test", "/pay/invoice", &payments.with(&[]))?;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(stack.echo.hits(), reached + 1);
    Ok(())
}

#[tokio::test]
async fn crl_mode_leaf_only_checks_the_client_certificate_not_its_intermediate(
) -> harness::Result<()> {
    let stack = Stack::start().await?;
    let dir = tempfile::tempdir()?;
    let root = ClientCa::new("Leaf-only Root CA");
    let inter = root.intermediate("Leaf-only Intermediate CA", 77);
    let chained = |cn: &str, serial: u64| {
        let spec = ClientSpec {
            serial: Some(serial),
            ..ClientSpec::default()
        };
        let leaf = inter.client_with(cn, &spec);
        // The client sends its intermediate after its own certificate.
        let sent = Leaf {
            cert_pem: leaf.cert_pem + &inter.cert_pem,
            key_pem: leaf.key_pem,
        };
        Files::write(&sent, dir.path(), cn)
    };
    let (fine, revoked) = (chained("fine", 2001), chained("revoked", 2002));
    // The root revokes the intermediate; the intermediate revokes one leaf.
    let crls = json!([root.crl(&[77]), inter.crl(&[2002])]);
    let settings = |mode: &str| json!({"depth": 2, "crl": crls, "crl_mode": mode});
    let handshake_ssl = |mode: &str| {
        let mut client = settings(mode);
        client["ca"] = json!(root.cert_pem);
        ssl("chain.test", &root.server("chain.test"), Some(client))
    };
    let route_checked = |mode: &str| {
        let mut plugin = settings(mode);
        plugin["ca"] = json!([root.cert_pem]);
        let plugins = json!({ "client-cert-auth": plugin });
        stack.route("route-chain.test", "/*", plugins)
    };
    stack
        .gw
        .admin()
        .create_all([
            ("ssls/1", handshake_ssl("leaf_only")),
            (
                "ssls/2",
                ssl("route-chain.test", &root.server("route-chain.test"), None),
            ),
            ("routes/1", stack.route("chain.test", "/*", json!({}))),
            ("routes/2", route_checked("leaf_only")),
        ])
        .await?;

    // leaf_only: the revoked intermediate is not looked up; the leaf is.
    eventually_status("leaf_only at the handshake, unrevoked leaf", 200, || {
        stack.curl("chain.test", "/", &fine.with(&[]))
    })
    .await?;
    let out = stack.curl("chain.test", "/", &revoked.with(&[]))?;
    assert_eq!(out.status, 0, "a revoked leaf fails the handshake: {out:?}");
    eventually_status("leaf_only on the route, unrevoked leaf", 200, || {
        stack.curl("route-chain.test", "/", &fine.with(&[]))
    })
    .await?;
    let out = stack.curl("route-chain.test", "/", &revoked.with(&[]))?;
    assert_eq!(out.status, 401, "a revoked leaf is refused: {out:?}");

    // strict, same CRLs: the revoked intermediate now refuses its leaves,
    // which shows the root's CRL does revoke it.
    stack.put("ssls/1", handshake_ssl("strict"), 200).await?;
    stack.put("routes/2", route_checked("strict"), 200).await?;
    eventually_status("strict at the handshake", 0, || {
        stack.curl("chain.test", "/", &fine.with(&[]))
    })
    .await?;
    eventually_status("strict on the route", 401, || {
        stack.curl("route-chain.test", "/", &fine.with(&[]))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn unknown_revocation_status_is_refused_unless_allowed() -> harness::Result<()> {
    let stack = Stack::start().await?;
    let dir = tempfile::tempdir()?;
    // Both CAs are trusted; only the first publishes a CRL, so the status
    // of the second one's certificates is unknown.
    let (covered, uncovered) = (ClientCa::new("Covered CA"), ClientCa::new("Uncovered CA"));
    let leaf = |ca: &ClientCa, cn: &str, serial: u64| {
        let spec = ClientSpec {
            serial: Some(serial),
            ..ClientSpec::default()
        };
        Files::write(&ca.client_with(cn, &spec), dir.path(), cn)
    };
    let fine = leaf(&covered, "fine", 3001);
    let revoked = leaf(&covered, "revoked", 3002);
    let unknown = leaf(&uncovered, "unknown", 3003);
    let crl = covered.crl(&[3002]);
    let settings = |unknown_status: Option<&str>| {
        let mut settings = json!({"crl": [crl]});
        if let Some(status) = unknown_status {
            settings["unknown_status"] = json!(status);
        }
        settings
    };
    let handshake_ssl = |unknown_status: Option<&str>| {
        let mut client = settings(unknown_status);
        client["ca"] = json!(format!("{}{}", covered.cert_pem, uncovered.cert_pem));
        ssl("status.test", &covered.server("status.test"), Some(client))
    };
    let route_checked = |unknown_status: Option<&str>| {
        let mut plugin = settings(unknown_status);
        plugin["ca"] = json!([covered.cert_pem, uncovered.cert_pem]);
        let plugins = json!({ "client-cert-auth": plugin });
        stack.route("route-status.test", "/*", plugins)
    };
    stack
        .gw
        .admin()
        .create_all([
            ("ssls/1", handshake_ssl(None)),
            (
                "ssls/2",
                ssl(
                    "route-status.test",
                    &covered.server("route-status.test"),
                    None,
                ),
            ),
            ("routes/1", stack.route("status.test", "/*", json!({}))),
            ("routes/2", route_checked(None)),
        ])
        .await?;

    // The default: an unknown status is refused, like a revocation.
    eventually_status("a covered certificate at the handshake", 200, || {
        stack.curl("status.test", "/", &fine.with(&[]))
    })
    .await?;
    eventually_status("a covered certificate on the route", 200, || {
        stack.curl("route-status.test", "/", &fine.with(&[]))
    })
    .await?;
    for (who, files) in [("unknown status", &unknown), ("revoked", &revoked)] {
        let out = stack.curl("status.test", "/", &files.with(&[]))?;
        assert_eq!(out.status, 0, "{who} fails the handshake: {out:?}");
        let out = stack.curl("route-status.test", "/", &files.with(&[]))?;
        assert_eq!(out.status, 401, "{who} is refused by the route: {out:?}");
    }
    let out = stack.curl("route-status.test", "/", &unknown.with(&[]))?;
    assert_eq!(
        out.body, r#"{"message":"the client certificate is not accepted"}"#,
        "{out:?}"
    );

    // `allow` on a running gateway: the unknown status now passes, and a
    // certificate the CRL does revoke is still refused.
    stack
        .put("ssls/1", handshake_ssl(Some("allow")), 200)
        .await?;
    stack
        .put("routes/2", route_checked(Some("allow")), 200)
        .await?;
    eventually_status("allow at the handshake", 200, || {
        stack.curl("status.test", "/", &unknown.with(&[]))
    })
    .await?;
    eventually_status("allow on the route", 200, || {
        stack.curl("route-status.test", "/", &unknown.with(&[]))
    })
    .await?;
    for (host, refused) in [("status.test", 0), ("route-status.test", 401)] {
        let out = stack.curl(host, "/", &revoked.with(&[]))?;
        assert_eq!(out.status, refused, "revoked on {host} with allow: {out:?}");
        assert_eq!(stack.curl(host, "/", &fine.with(&[]))?.status, 200);
    }

    // An explicit `deny` is the default again.
    stack
        .put("ssls/1", handshake_ssl(Some("deny")), 200)
        .await?;
    eventually_status("deny at the handshake", 0, || {
        stack.curl("status.test", "/", &unknown.with(&[]))
    })
    .await?;
    Ok(())
}

/// The DER of every certificate in a PEM the test generated.
fn ders(pem: &str) -> Vec<Vec<u8>> {
    cert_text::pem_ders(pem).expect("a generated PEM")
}

/// The value of the quoted XFCC field `key` (`Cert`, `Chain`), decoded
/// from its percent-encoding.
fn xfcc_pem(xfcc: &Value, key: &str) -> String {
    let xfcc = xfcc.as_str().unwrap_or_else(|| panic!("no XFCC: {xfcc}"));
    let opening = format!(";{key}=\"");
    let start = xfcc
        .find(&opening)
        .unwrap_or_else(|| panic!("no {key} in {xfcc}"))
        + opening.len();
    let len = xfcc[start..]
        .find('"')
        .unwrap_or_else(|| panic!("{key} is not closed in {xfcc}"));
    cert_text::percent_decode(&xfcc[start..start + len]).expect("percent-encoded PEM")
}

/// The request headers a route with `forward-client-cert` (`format: both`,
/// `details: [cert, chain]`) sent upstream, decoded: XFCC `Cert`, XFCC
/// `Chain`, RFC 9440 `Client-Cert` and `Client-Cert-Chain` (empty when
/// absent).
fn forwarded_ders(headers: &Value) -> harness::Result<[Vec<Vec<u8>>; 4]> {
    let xfcc = &headers["x-forwarded-client-cert"];
    let client_cert = headers["client-cert"].as_str().unwrap_or_default();
    let chain = match headers["client-cert-chain"].as_str() {
        Some(chain) => cert_text::byte_sequence_ders(chain)?,
        None => Vec::new(),
    };
    Ok([
        cert_text::pem_ders(&xfcc_pem(xfcc, "Cert"))?,
        cert_text::pem_ders(&xfcc_pem(xfcc, "Chain"))?,
        cert_text::byte_sequence_ders(client_cert)?,
        chain,
    ])
}

#[tokio::test]
async fn header_passed_certificates_reach_the_upstream_intact_in_every_encoding(
) -> harness::Result<()> {
    let stack = Stack::start().await?;
    let root = ClientCa::new("Header Root CA");
    let inter = root.intermediate("Header Issuing CA", 90);
    let chained = inter.client("chained", "Behind The Proxy");
    let chain_pem = format!("{}{}", chained.cert_pem, inter.cert_pem);
    // base64-der holds one certificate: one issued by the root itself.
    let direct = root.client("direct", "Behind The Proxy");
    // (encoding, what the front proxy sends, the certificates it holds)
    let cases = [
        ("pem", chain_pem.trim().replace('\n', " "), &chain_pem),
        ("url-pem", cert_text::percent_encode(&chain_pem), &chain_pem),
        (
            "base64-der",
            cert_text::base64_of_pem(&direct.cert_pem),
            &direct.cert_pem,
        ),
    ];
    stack
        .put("ssls/1", ssl("lb.test", &root.server("lb.test"), None), 201)
        .await?;
    for (encoding, _, _) in &cases {
        let plugins = json!({
            "client-cert-auth": {
                "ca": [root.cert_pem],
                "depth": 2,
                "cert_header": {
                    "name": "X-Client-Certificate",
                    "encoding": encoding,
                    "trusted_sources": ["127.0.0.2/32"]
                }
            },
            "forward-client-cert": {
                "mode": "sanitize_set", "format": "both", "details": ["cert", "chain"]
            }
        });
        let route = stack.route("lb.test", &format!("/{encoding}"), plugins);
        stack.put(&format!("routes/{encoding}"), route, 201).await?;
    }

    for (encoding, value, sent_pem) in &cases {
        let header = format!("X-Client-Certificate: {value}");
        let from_lb = ["--interface", "127.0.0.2", "-H", header.as_str()];
        let out = eventually_status(encoding, 200, || {
            stack.curl("lb.test", &format!("/{encoding}"), &from_lb)
        })
        .await?;
        let headers = upstream_headers(&out);
        assert_eq!(headers["x-client-certificate"], json!(value), "{encoding}");
        let sent = ders(sent_pem);
        let [cert, chain, client_cert, client_cert_chain] = forwarded_ders(&headers)?;
        assert_eq!(cert, sent[..1], "{encoding}: XFCC Cert");
        assert_eq!(chain, sent, "{encoding}: XFCC Chain");
        assert_eq!(client_cert, sent[..1], "{encoding}: Client-Cert");
        assert_eq!(
            client_cert_chain,
            sent[1..],
            "{encoding}: Client-Cert-Chain"
        );
    }
    Ok(())
}

#[tokio::test]
async fn upstream_certificate_headers_decode_to_the_presented_certificate() -> harness::Result<()> {
    let stack = Stack::start().await?;
    let dir = tempfile::tempdir()?;
    let root = ClientCa::new("Presented Root CA");
    let inter = root.intermediate("Presented Issuing CA", 91);
    let leaf = inter.client("presented", "Acme");
    let presented = Leaf {
        cert_pem: leaf.cert_pem + &inter.cert_pem,
        key_pem: leaf.key_pem,
    };
    let files = Files::write(&presented, dir.path(), "presented");
    let client = json!({"ca": root.cert_pem, "depth": 2});
    let plugins = json!({
        "mtls-auth": {"upstream_cert_header": "X-Mtls-Client-Cert"},
        "proxy-rewrite": {"headers": {
            "X-Escaped-Cert": "$ssl_client_escaped_cert",
            "X-Raw-Cert": "$ssl_client_raw_cert"
        }},
        "forward-client-cert": {
            "mode": "sanitize_set", "format": "both", "details": ["cert", "chain"]
        }
    });
    stack
        .gw
        .admin()
        .create_all([
            (
                "ssls/1",
                ssl("present.test", &root.server("present.test"), Some(client)),
            ),
            ("routes/1", stack.route("present.test", "/*", plugins)),
        ])
        .await?;
    let out = eventually_status("a chained client certificate", 200, || {
        stack.curl("present.test", "/", &files.with(&[]))
    })
    .await?;
    let headers = upstream_headers(&out);
    let sent = ders(&presented.cert_pem);
    assert_eq!(sent.len(), 2, "the leaf and its intermediate");
    let text = |name: &str| {
        headers[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} upstream: {headers:#}"))
            .to_owned()
    };
    // Percent-encoded PEM (nginx `$ssl_client_escaped_cert`), and the raw
    // PEM with its line breaks turned into spaces: the leaf only.
    let escaped = [
        ("mtls-auth upstream_cert_header", text("x-mtls-client-cert")),
        ("$ssl_client_escaped_cert", text("x-escaped-cert")),
    ];
    for (what, value) in escaped {
        let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~%".contains(&b);
        assert!(value.bytes().all(unreserved), "{what}: {value}");
        let decoded = cert_text::pem_ders(&cert_text::percent_decode(&value)?)?;
        assert_eq!(decoded, sent[..1], "{what}: {value}");
    }
    let raw = text("x-raw-cert");
    assert!(raw.starts_with("-----BEGIN CERTIFICATE----- "), "{raw}");
    assert_eq!(
        cert_text::pem_ders(&raw)?,
        sent[..1],
        "$ssl_client_raw_cert"
    );
    // `Client-Cert` of a handshake certificate is checked by
    // `forward_client_cert_in_every_mode`; the chain headers are not.
    let [cert, chain, _, client_cert_chain] = forwarded_ders(&headers)?;
    assert_eq!(cert, sent[..1], "XFCC Cert");
    assert_eq!(chain, sent, "XFCC Chain");
    assert_eq!(client_cert_chain, sent[1..], "Client-Cert-Chain");
    Ok(())
}

#[tokio::test]
async fn a_front_proxy_trusted_by_its_certificate_speaks_for_the_client_and_a_client_does_not(
) -> harness::Result<()> {
    let stack = Stack::start().await?;
    let dir = tempfile::tempdir()?;
    let (proxy_ca, users_ca) = (ClientCa::new("Proxy CA"), ClientCa::new("Users CA"));
    let pinned = proxy_ca.client("front-proxy", "Edge");
    let proxy = Files::write(&pinned, dir.path(), "proxy");
    // Same CA, same subject, another key: not the pinned certificate.
    let impostor = Files::write(
        &proxy_ca.client("front-proxy", "Edge"),
        dir.path(),
        "impostor",
    );
    let end_user = users_ca.client("end-user", "Customers");
    let end_user_files = Files::write(&end_user, dir.path(), "end-user");
    let value = end_user.cert_pem.trim().replace('\n', " ");
    let header = format!("X-Client-Cert: {value}");
    // The proxy is trusted by its certificate alone (no `trusted_sources`)
    // and, pinned, is a client itself; the clients behind it are accepted
    // by their CA.
    let route = |uri: &str, required: &str| {
        let plugins = json!({
            "client-cert-auth": {
                "required": required,
                "certificates": [pinned.cert_pem],
                "ca": [users_ca.cert_pem],
                "cert_header": {"name": "X-Client-Cert", "trusted_certificates": [pinned.cert_pem]}
            },
            "forward-client-cert": {"mode": "sanitize_set", "details": ["subject"]}
        });
        stack.route("edge.test", uri, plugins)
    };
    stack
        .gw
        .admin()
        .create_all([
            (
                "ssls/1",
                ssl("edge.test", &users_ca.server("edge.test"), None),
            ),
            ("routes/1", route("/mandatory", "mandatory")),
            ("routes/2", route("/optional", "optional")),
        ])
        .await?;
    let xfcc = |cert_pem: &str, subject: &str| {
        json!(format!("Hash={};Subject=\"{subject}\"", sha256(cert_pem)))
    };

    // The pinned proxy speaks for the end user, whose certificate is judged
    // and becomes the identity sent upstream; the header is kept.
    let out = eventually_status("the pinned proxy with a header", 200, || {
        stack.curl("edge.test", "/mandatory", &proxy.with(&["-H", &header]))
    })
    .await?;
    let headers = upstream_headers(&out);
    assert_eq!(
        headers["x-forwarded-client-cert"],
        xfcc(&end_user.cert_pem, "CN=end-user,O=Customers,ST=Sweden,C=SE"),
        "{headers:#}"
    );
    assert_eq!(headers["x-client-cert"], json!(value), "{headers:#}");
    // Without the header, the proxy is the client.
    let out = stack.curl("edge.test", "/mandatory", &proxy.with(&[]))?;
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(
        upstream_headers(&out)["x-forwarded-client-cert"],
        xfcc(&pinned.cert_pem, "CN=front-proxy,O=Edge,ST=Sweden,C=SE")
    );

    // A client the route accepts is not a proxy: naming another client's
    // (public) certificate in the header does not make it that client. The
    // header is removed and the client is itself.
    let other = users_ca.client("victim", "Customers");
    let impersonation = format!(
        "X-Client-Cert: {}",
        other.cert_pem.trim().replace('\n', " ")
    );
    let out = stack.curl(
        "edge.test",
        "/mandatory",
        &end_user_files.with(&["-H", &impersonation]),
    )?;
    assert_eq!(out.status, 200, "{out:?}");
    let headers = upstream_headers(&out);
    assert_eq!(
        headers["x-forwarded-client-cert"],
        xfcc(&end_user.cert_pem, "CN=end-user,O=Customers,ST=Sweden,C=SE"),
        "{headers:#}"
    );
    assert!(headers["x-client-cert"].is_null(), "{headers:#}");

    // The same header behind a certificate the route does not accept is
    // not believed: the connection's own certificate is judged, and the
    // request never reaches the upstream.
    let reached = stack.echo.hits();
    let out = stack.curl("edge.test", "/mandatory", &impostor.with(&["-H", &header]))?;
    assert_eq!(out.status, 401, "{out:?}");
    assert_eq!(
        out.body,
        r#"{"message":"the client certificate is not accepted"}"#
    );
    let out = stack.curl("edge.test", "/mandatory", &["-H", &header])?;
    assert_eq!(out.status, 401, "{out:?}");
    assert_eq!(
        out.body,
        r#"{"message":"a client certificate is required"}"#
    );
    assert_eq!(stack.echo.hits(), reached, "refused before the upstream");
    // Where no certificate is required, the untrusted header is removed and
    // the request goes on with no identity.
    let out = stack.curl("edge.test", "/optional", &["-H", &header])?;
    assert_eq!(out.status, 200, "{out:?}");
    let headers = upstream_headers(&out);
    assert!(headers["x-client-cert"].is_null(), "{headers:#}");
    assert!(headers["x-forwarded-client-cert"].is_null(), "{headers:#}");
    Ok(())
}
