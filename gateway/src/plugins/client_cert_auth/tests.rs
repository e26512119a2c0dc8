use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Value};

use super::*;

fn build(config: &Value) -> Result<Box<dyn Plugin>, String> {
    crate::plugins::testing::build(NAME, config)
}

fn plugin(config: &Value) -> ClientCertAuthPlugin {
    ClientCertAuthPlugin::new(&ClientCertAuth::from_config(config).unwrap()).unwrap()
}
use crate::plugins::identity::verified_client;
use crate::plugins::testing::{answered, ctx_with, peer, request, tls_conn, Conn, Pki, TestCert};

/// Runs the plugin built from `config` for a request with `headers` on
/// `conn`; returns the outcome and the subject of the identity it set.
fn run(config: &Value, conn: &Conn, headers: &[(&str, &str)]) -> (Flow, Option<String>, Parts) {
    let plugin = build(config).unwrap();
    let mut ctx = conn.ctx();
    let mut req = request(headers);
    let flow = plugin.request_filter(&mut ctx, &mut req);
    let identity = verified_client(&ctx).map(|cert| cert.summary.subject.clone());
    (flow, identity, req)
}

fn presenting(cert: &TestCert) -> Conn {
    ctx_with(Some(cert))
}

/// A handshake certificate the SSL object did not verify (it has no CA, or
/// another one).
fn presenting_unverified(cert: &TestCert, chain: &[&TestCert], remote: &str) -> Conn {
    let mut peer = peer(cert);
    peer.intermediates = chain.iter().map(|c| c.der.clone()).collect();
    let failed = ClientCert::Failed {
        reason: "unable to get local issuer certificate".into(),
        cert: Arc::new(peer),
    };
    tls_conn(failed, remote)
}

async fn assert_refused(flow: Flow, body: &str) {
    let (status, headers, text) = answered(flow).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers[WWW_AUTHENTICATE],
        r#"Mutual SSL realm="portcullis""#
    );
    assert_eq!(text, body);
}

#[tokio::test]
async fn pinned_certificates_as_apk() {
    let pki = Pki::new();
    let (one, two, other) = (pki.client("one"), pki.client("two"), pki.client("other"));
    let config = json!({"required": "mandatory", "certificates": [one.pem, two.pem]});
    for pinned in [&one, &two] {
        let (flow, identity, _) = run(&config, &presenting(pinned), &[]);
        assert!(flow.is_continue());
        assert_eq!(identity, Some(peer(pinned).summary.subject));
    }
    // Issued by the same CA, but not pinned.
    let (flow, _, _) = run(&config, &presenting(&other), &[]);
    assert_refused(flow, REFUSED).await;
    let (flow, identity, _) = run(&config, &ctx_with(None), &[]);
    assert_eq!(identity, None);
    assert_refused(flow, MISSING).await;
}

#[tokio::test]
async fn optional_lets_anonymous_clients_through_but_not_bad_certificates() {
    let pki = Pki::new();
    let stranger = Pki::named("Stranger CA").client("stranger");
    let config = json!({"required": "optional", "ca": [pki.ca.pem]});
    let (flow, identity, _) = run(&config, &ctx_with(None), &[]);
    assert!(flow.is_continue());
    assert_eq!(identity, None);
    let (flow, identity, _) = run(
        &config,
        &presenting_unverified(&pki.client("ok"), &[], "192.0.2.1:1"),
        &[],
    );
    assert!(flow.is_continue());
    assert!(identity.unwrap().starts_with("CN=ok,"));
    let (flow, _, _) = run(
        &config,
        &presenting_unverified(&stranger, &[], "192.0.2.1:1"),
        &[],
    );
    assert_refused(flow, REFUSED).await;
}

#[tokio::test]
async fn each_route_trusts_its_own_ca() {
    let (a, b) = (Pki::named("CA A"), Pki::named("CA B"));
    let route_a = json!({"ca": [a.ca.pem]});
    let route_b = json!({"ca": [b.ca.pem]});
    let (alice, bob) = (a.client("alice"), b.client("bob"));
    let conn_alice = presenting_unverified(&alice, &[], "192.0.2.1:1");
    let conn_bob = presenting_unverified(&bob, &[], "192.0.2.1:1");
    assert!(run(&route_a, &conn_alice, &[]).0.is_continue());
    assert!(run(&route_b, &conn_bob, &[]).0.is_continue());
    assert_refused(run(&route_a, &conn_bob, &[]).0, REFUSED).await;
    assert_refused(run(&route_b, &conn_alice, &[]).0, REFUSED).await;
    // A certificate the SSL object verified is judged again by the route.
    assert_refused(run(&route_b, &presenting(&alice), &[]).0, REFUSED).await;
}

#[test]
fn chains_through_intermediates_within_depth() {
    let root = Pki::named("Root");
    let intermediate = root.intermediate("Issuing CA");
    let leaf = intermediate.client("chained");
    let conn = presenting_unverified(&leaf, &[&intermediate.ca], "192.0.2.1:1");
    assert!(run(&json!({"ca": [root.ca.pem]}), &conn, &[]).0.is_break());
    assert!(run(&json!({"ca": [root.ca.pem], "depth": 2}), &conn, &[])
        .0
        .is_continue());
}

#[tokio::test]
async fn revoked_certificates_are_refused() {
    let pki = Pki::new();
    let (revoked, fine) = (
        pki.client_with_serial("revoked", 1001),
        pki.client_with_serial("fine", 1002),
    );
    let crl = pki.crl(&[1001]);
    let by_ca = json!({"ca": [pki.ca.pem], "crl": [crl]});
    assert!(run(&by_ca, &presenting(&fine), &[]).0.is_continue());
    assert_refused(run(&by_ca, &presenting(&revoked), &[]).0, REFUSED).await;
    let pinned = json!({"certificates": [revoked.pem, fine.pem], "crl": [crl]});
    assert!(run(&pinned, &presenting(&fine), &[]).0.is_continue());
    assert_refused(run(&pinned, &presenting(&revoked), &[]).0, REFUSED).await;
    // Another CA's CRL: the status of this CA's certificates is unknown.
    let elsewhere = Pki::named("Elsewhere").crl(&[1001]);
    let unknown = json!({"ca": [pki.ca.pem], "crl": [elsewhere]});
    assert_refused(run(&unknown, &presenting(&fine), &[]).0, REFUSED).await;
    let allowed = json!({"ca": [pki.ca.pem], "crl": [elsewhere], "unknown_status": "allow"});
    assert!(run(&allowed, &presenting(&fine), &[]).0.is_continue());
}

#[tokio::test]
async fn a_header_certificate_counts_only_from_trusted_sources() {
    let pki = Pki::new();
    let client = pki.client("behind-lb");
    let header = client.pem.replace('\n', " ");
    let config = json!({
        "required": "mandatory",
        "certificates": [client.pem],
        "cert_header": {"name": "X-WSO2-CLIENT-CERTIFICATE", "trusted_sources": ["10.0.0.0/8"]}
    });
    let lb = tls_conn(ClientCert::None, "10.1.2.3:40000");
    let (flow, identity, req) = run(&config, &lb, &[("X-WSO2-CLIENT-CERTIFICATE", &header)]);
    assert!(flow.is_continue());
    assert_eq!(identity, Some(peer(&client).summary.subject));
    assert!(req.headers.contains_key("x-wso2-client-certificate"));

    let stranger = tls_conn(ClientCert::None, "192.0.2.66:40000");
    let (flow, identity, req) = run(
        &config,
        &stranger,
        &[("X-WSO2-CLIENT-CERTIFICATE", &header)],
    );
    assert_eq!(identity, None);
    assert!(!req.headers.contains_key("x-wso2-client-certificate"));
    assert_refused(flow, MISSING).await;

    let (flow, _, _) = run(&config, &lb, &[("X-WSO2-CLIENT-CERTIFICATE", "garbage")]);
    assert_refused(flow, REFUSED).await;
    let twice = [("X-WSO2-CLIENT-CERTIFICATE", header.as_str()); 2];
    assert_refused(run(&config, &lb, &twice).0, REFUSED).await;
}

#[test]
fn a_front_proxy_is_trusted_by_its_certificate_and_an_accepted_client_is_not() {
    let pki = Pki::new();
    let (proxy, client) = (pki.client("front-proxy"), pki.client("end-user"));
    let victim = pki.client("victim");
    let encoded =
        |cert: &TestCert| base64::engine::general_purpose::STANDARD.encode(cert.der.as_ref());
    let config = json!({
        "ca": [pki.ca.pem],
        "cert_header": {
            "name": "X-Client-Cert",
            "encoding": "base64-der",
            "trusted_certificates": [proxy.pem]
        }
    });
    let (flow, identity, _) = run(
        &config,
        &presenting(&proxy),
        &[("X-Client-Cert", &encoded(&client))],
    );
    assert!(flow.is_continue());
    assert_eq!(identity, Some(peer(&client).summary.subject));
    // A client the route accepts is not a proxy: its header is removed and
    // it is itself, never the certificate it names.
    let (flow, identity, req) = run(
        &config,
        &presenting(&client),
        &[("X-Client-Cert", &encoded(&victim))],
    );
    assert!(flow.is_continue());
    assert_eq!(identity, Some(peer(&client).summary.subject));
    assert!(!req.headers.contains_key("x-client-cert"));
    // Another certificate from the same CA with the proxy's name is not
    // the proxy's.
    let impostor = pki.client("front-proxy");
    let (flow, _, req) = run(
        &config,
        &presenting(&impostor),
        &[("X-Client-Cert", &encoded(&victim))],
    );
    assert!(flow.is_continue());
    assert!(!req.headers.contains_key("x-client-cert"));
}

#[tokio::test]
async fn a_header_holds_one_client_certificate_then_only_its_ca_chain() {
    let root = Pki::named("Header Root");
    let intermediate = root.intermediate("Header Issuing CA");
    let (victim, proxied) = (
        intermediate.client("victim"),
        intermediate.client("proxied"),
    );
    let config = json!({
        "ca": [root.ca.pem],
        "depth": 2,
        "cert_header": {"name": "X-Client-Cert", "trusted_sources": ["10.0.0.0/8"]}
    });
    let lb = tls_conn(ClientCert::None, "10.1.2.3:40000");
    let header = |certs: &[&TestCert]| {
        let pem: String = certs.iter().map(|c| c.pem.as_str()).collect();
        pem.replace('\n', " ")
    };
    let chain = header(&[&proxied, &intermediate.ca]);
    let (flow, identity, _) = run(&config, &lb, &[("X-Client-Cert", &chain)]);
    assert!(flow.is_continue());
    assert_eq!(identity, Some(peer(&proxied).summary.subject));
    // A proxy appending its client's certificate to one the client sent:
    // the first is the client's own word, and neither is read.
    let appended = header(&[&victim, &proxied]);
    let (flow, identity, _) = run(&config, &lb, &[("X-Client-Cert", &appended)]);
    assert_eq!(identity, None);
    assert_refused(flow, REFUSED).await;
    let after_chain = header(&[&victim, &intermediate.ca, &proxied]);
    assert_refused(
        run(&config, &lb, &[("X-Client-Cert", &after_chain)]).0,
        REFUSED,
    )
    .await;
    let err = header_cert(
        &HeaderValue::from_str(&appended).unwrap(),
        &ClientCertAuth::from_config(&config)
            .unwrap()
            .cert_header
            .unwrap(),
    )
    .expect_err("two client certificates");
    assert!(matches!(err, HeaderCertError::NotCa(2)), "{err}");
    assert!(
        err.to_string()
            .contains("certificate #2 is not a CA certificate"),
        "{err}"
    );
}

#[test]
fn refuses_configurations_the_admin_api_refuses() {
    let err = build(&json!({"ca": ["nope"]})).err().unwrap();
    assert!(err.contains("ca[0]"), "{err}");
    assert!(build(&json!({"required": "optional"})).is_err());
}

/// The connection's certificate, as the plugin receives it on each request.
fn connection_cert(conn: &Conn) -> Arc<PeerCert> {
    match &conn.0.tls.as_ref().unwrap().client_cert {
        ClientCert::Verified(cert) | ClientCert::Failed { cert, .. } => Arc::clone(cert),
        ClientCert::None => panic!("no certificate on this connection"),
    }
}

/// Runs `plugin` for one request without headers on `conn`.
fn request_on(plugin: &ClientCertAuthPlugin, conn: &Conn) -> (Flow, Option<String>) {
    let mut ctx = conn.ctx();
    let flow = plugin.request_filter(&mut ctx, &mut request(&[]));
    let identity = verified_client(&ctx).map(|cert| cert.summary.subject.clone());
    (flow, identity)
}

#[tokio::test]
async fn a_connection_is_verified_once_and_judged_alike_on_every_request() {
    let (a, b) = (Pki::named("CA A"), Pki::named("CA B"));
    let route_a = plugin(&json!({"ca": [a.ca.pem]}));
    let route_b = plugin(&json!({"ca": [b.ca.pem]}));
    let alice = a.client("alice");
    let conn = presenting_unverified(&alice, &[], "192.0.2.1:1");
    let cert = connection_cert(&conn);
    let now = unix_secs(UnixTime::now());
    assert!(!route_a.accepted.holds(&cert, now));
    for _ in 0..3 {
        let (flow, identity) = request_on(&route_a, &conn);
        assert!(flow.is_continue());
        assert_eq!(identity, Some(peer(&alice).summary.subject));
        assert!(
            route_a.accepted.holds(&cert, now),
            "remembered after the first"
        );
    }
    // Remembered by route A's trust set only: route B still refuses.
    for _ in 0..2 {
        let (flow, identity) = request_on(&route_b, &conn);
        assert_eq!(identity, None);
        assert_refused(flow, REFUSED).await;
        assert!(
            !route_b.accepted.holds(&cert, now),
            "refusals are not remembered"
        );
    }
    // Another connection with the same certificate is verified for itself.
    let again = presenting_unverified(&alice, &[], "192.0.2.2:1");
    assert!(!route_a.accepted.holds(&connection_cert(&again), now));
    assert!(request_on(&route_a, &again).0.is_continue());
}
