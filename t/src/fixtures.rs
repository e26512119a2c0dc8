//! The objects and requests of the walkthrough, shared by the e2e tests.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::admin::AdminClient;
use crate::curl::{curl, openssl, CurlOutput};
use crate::echo::EchoServer;
use crate::etcd::Etcd;
use crate::gateway::{Gateway, GatewayOptions};
use crate::pki::{Leaf, OpensslPki};
use crate::wait::wait_until;

/// How long a change may take to reach the data plane in a test.
pub const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(15);

/// The walkthrough's `proxy-rewrite` headers, passing the client identity upstream.
pub fn identity_headers() -> Value {
    json!({
        "X-Ssl-Client-Fingerprint": "$ssl_client_fingerprint",
        "X-Ssl-Client-Serial": "$ssl_client_serial",
        "X-Ssl-Client-S-DN": "$ssl_client_s_dn"
    })
}

/// The walkthrough's SSL object: `test.com`, server.cer/server.key, client CA ca.cer.
pub fn walkthrough_ssl(pki: &OpensslPki) -> Value {
    json!({
        "sni": "test.com",
        "cert": pki.read("server.cer"),
        "key": pki.read("server.key"),
        "client": { "ca": pki.read("ca.cer") }
    })
}

/// The walkthrough's route: `/anything` with the identity headers, to `node`.
pub fn walkthrough_route(node: &str) -> Value {
    json!({
        "uri": "/anything",
        "plugins": { "proxy-rewrite": { "headers": identity_headers() } },
        "upstream": { "nodes": { node: 1 }, "type": "roundrobin" }
    })
}

/// An SSL object serving `server` for `sni`, without client verification.
pub fn plain_ssl(sni: &str, server: &Leaf) -> Value {
    json!({ "sni": sni, "cert": server.cert_pem, "key": server.key_pem })
}

/// Serves `test.com` over TLS with `server`, without client certificates
/// (`ssls/1`), and `/anything` from `echo` (`routes/1`); returns once an
/// HTTPS request is answered 200.
pub async fn serve_plain_test_com(
    gw: &Gateway,
    server: &Leaf,
    echo: &EchoServer,
) -> crate::Result<()> {
    gw.admin()
        .create_all([
            ("ssls/1", plain_ssl("test.com", server)),
            ("routes/1", plain_route("/anything", &echo.node())),
        ])
        .await?;
    eventually_status("test.com over TLS", 200, || {
        curl_https(gw, "test.com", "/anything", &[])
    })
    .await?;
    Ok(())
}

/// etcd, a gateway with default options on it, and an echo upstream.
pub async fn start_stack() -> crate::Result<(Etcd, Gateway, EchoServer)> {
    let etcd = Etcd::start().await?;
    let gw = Gateway::start(&etcd).await?;
    let echo = EchoServer::start().await?;
    Ok((etcd, gw, echo))
}

/// A `control_plane` gateway (admin API only) and a `data_plane` gateway
/// (traffic only) sharing one etcd prefix.
pub async fn start_control_and_data_plane(etcd: &Etcd) -> crate::Result<(Gateway, Gateway)> {
    let control = Gateway::start_with(
        etcd,
        GatewayOptions {
            role: "control_plane",
            ..GatewayOptions::default()
        },
    )
    .await?;
    let data = Gateway::start_with(
        etcd,
        GatewayOptions {
            role: "data_plane",
            prefix: control.prefix().to_owned(),
            ..GatewayOptions::default()
        },
    )
    .await?;
    Ok((control, data))
}

/// Creates the walkthrough's SSL object (`ssls/1`) and route (`routes/1`, to `node`).
pub async fn create_walkthrough(
    admin: &AdminClient,
    pki: &OpensslPki,
    node: &str,
) -> crate::Result<()> {
    admin
        .create_all([
            ("ssls/1", walkthrough_ssl(pki)),
            ("routes/1", walkthrough_route(node)),
        ])
        .await
}

/// Two sites on one gateway: test.com requires mTLS (the walkthrough, route
/// to the echo upstream); other.com is plain TLS with its own CA. Returns once
/// other.com serves.
pub async fn start_two_sites() -> crate::Result<(Etcd, Gateway, EchoServer, OpensslPki)> {
    let (etcd, gw, echo) = start_stack().await?;
    let pki = OpensslPki::walkthrough()?;
    let other = crate::pki::Ca::new("Other CA").server("other.com", &["other.com"]);
    let admin = gw.admin();
    create_walkthrough(&admin, &pki, &echo.node()).await?;
    admin
        .create("ssls/2", plain_ssl("other.com", &other))
        .await?;
    eventually_status("other.com", 200, || {
        curl_https(&gw, "other.com", "/anything", &[])
    })
    .await?;
    Ok((etcd, gw, echo, pki))
}

/// A temporary path as a command-line argument.
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// curl's `--cert CERT --key KEY`.
pub fn cert_args<'a>(cert: &'a Path, key: &'a Path) -> [&'a str; 4] {
    ["--cert", path_str(cert), "--key", path_str(key)]
}

/// A route for `uri` to `node`, without plugins.
pub fn plain_route(uri: &str, node: &str) -> Value {
    json!({ "uri": uri, "upstream": { "nodes": { node: 1 }, "type": "roundrobin" } })
}

/// A route for `uri` to `echo` whose upstream sees the node as `Host`
/// (`pass_host: node`), so a response tells which upstream served it.
/// Valid as written by hand to etcd too.
pub fn route_to(uri: &str, echo: &EchoServer) -> Value {
    json!({
        "uri": uri,
        "upstream": { "type": "roundrobin", "pass_host": "node", "nodes": { echo.node(): 1 } }
    })
}

/// Waits until `gw`'s status listener reports its etcd connection up.
pub async fn until_etcd_connected(gw: &Gateway, what: &str) -> crate::Result<()> {
    wait_until(what, PROPAGATION_TIMEOUT, || async {
        gw.status()
            .await
            .is_ok_and(|s| s["etcd"]["connected"] == true)
    })
    .await
}

/// `https://HOST:PORT/PATH` on the gateway's TLS listener.
pub fn https_url(gw: &Gateway, host: &str, path: &str) -> String {
    format!("https://{host}:{}{path}", gw.https_addr().port())
}

/// `curl --resolve HOST:PORT:127.0.0.1 https://HOST:PORT/PATH -k EXTRA...`, as in the walkthrough.
pub fn curl_https(
    gw: &Gateway,
    host: &str,
    path: &str,
    extra: &[&str],
) -> crate::Result<CurlOutput> {
    let resolve = format!("{host}:{}:127.0.0.1", gw.https_addr().port());
    let url = https_url(gw, host, path);
    let mut args = vec!["--resolve", resolve.as_str(), url.as_str(), "-k"];
    args.extend_from_slice(extra);
    curl(&args)
}

/// `curl http://127.0.0.1:PORT/PATH EXTRA...` on the gateway's plain HTTP listener.
pub fn curl_http(gw: &Gateway, path: &str, extra: &[&str]) -> crate::Result<CurlOutput> {
    let url = format!("http://{}{path}", gw.http_addr());
    let mut args = vec![url.as_str()];
    args.extend_from_slice(extra);
    curl(&args)
}

/// Repeats `request` until its status is `status`; returns that response.
/// The error shows the last response seen.
pub async fn eventually_status<F>(
    what: &str,
    status: u16,
    mut request: F,
) -> crate::Result<CurlOutput>
where
    F: FnMut() -> crate::Result<CurlOutput>,
{
    let mut last = None;
    let waited = wait_until(what, PROPAGATION_TIMEOUT, || {
        let out = request();
        let done = matches!(&out, Ok(o) if o.status == status);
        last = Some(out);
        async move { done }
    })
    .await;
    match (waited, last) {
        (Ok(()), Some(Ok(out))) => Ok(out),
        (waited, last) => Err(anyhow::anyhow!(
            "{}; wanted HTTP {status}, last response: {last:?}",
            waited.err().map(|e| e.to_string()).unwrap_or_default()
        )),
    }
}

/// The `host` header the echo upstream received (with `pass_host: node`, the node that served).
pub fn served_by(out: &CurlOutput) -> Option<String> {
    let body: Value = serde_json::from_str(&out.body).ok()?;
    body["headers"]["host"].as_str().map(str::to_owned)
}

/// Waits until the plain HTTP listener serves `path` from `echo` (the route
/// must set `pass_host: node`). The error shows the last response seen.
pub async fn until_served_by(gw: &Gateway, path: &str, echo: &EchoServer) -> crate::Result<()> {
    let mut last = None;
    wait_until(
        &format!("{path} to be served by {}", echo.node()),
        PROPAGATION_TIMEOUT,
        || {
            let out = curl_http(gw, path, &[]);
            let done =
                matches!(&out, Ok(o) if o.status == 200 && served_by(o) == Some(echo.node()));
            last = Some(out);
            async move { done }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; last response: {last:?}"))
}

/// What `openssl x509` prints for a certificate, in the formats nginx uses for
/// `$ssl_client_fingerprint`, `$ssl_client_serial` and `$ssl_client_s_dn`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    /// SHA-1 of the DER: 40 lowercase hex digits, no colons.
    pub fingerprint: String,
    /// Uppercase hex.
    pub serial: String,
    /// RFC 2253, e.g. `CN=CLIENT`.
    pub subject: String,
}

impl CertFacts {
    /// Asks `openssl x509 -noout -fingerprint -sha1 / -serial / -subject -nameopt RFC2253`.
    pub fn of(cert_pem: &str) -> crate::Result<CertFacts> {
        let fingerprint = openssl(&["x509", "-noout", "-fingerprint", "-sha1"], cert_pem)?;
        let serial = openssl(&["x509", "-noout", "-serial"], cert_pem)?;
        let subject = openssl(
            &["x509", "-noout", "-subject", "-nameopt", "RFC2253"],
            cert_pem,
        )?;
        Ok(CertFacts {
            fingerprint: after_eq(&fingerprint).replace(':', "").to_lowercase(),
            serial: after_eq(&serial).to_uppercase(),
            subject: after_eq(&subject).to_owned(),
        })
    }

    /// The certificate a TLS server presents for `sni` (`None`: no SNI sent).
    pub fn served(gw: &Gateway, sni: Option<&str>) -> crate::Result<CertFacts> {
        let connect = gw.https_addr().to_string();
        let mut args = vec!["s_client", "-connect", connect.as_str(), "-showcerts"];
        match sni {
            Some(sni) => args.extend(["-servername", sni]),
            None => args.push("-noservername"),
        }
        let out = crate::curl::openssl_output(&args, "")?;
        let pem = first_pem(&out.stdout).ok_or_else(|| {
            anyhow::anyhow!("no certificate served for {sni:?}: {}", out.stderr.trim())
        })?;
        CertFacts::of(&pem)
    }
}

/// `subject=CN=CLIENT` → `CN=CLIENT`.
fn after_eq(line: &str) -> &str {
    line.trim().split_once('=').map_or("", |(_, v)| v.trim())
}

fn first_pem(text: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = text.find(BEGIN)?;
    let end = text[start..].find(END)? + start + END.len();
    Some(format!("{}\n", &text[start..end]))
}
