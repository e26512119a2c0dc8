//! The objects the benchmark stores, as the admin API would store them
//! (body + `id` + `create_time`/`update_time`), and the certificates of the
//! SSL objects it makes in bulk.

use std::path::Path;

use anyhow::Context;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
use serde_json::{json, Value};

/// What the bench route does on both proxies: pass the client's identity
/// upstream, as nginx's `proxy_set_header X-Ssl-Client-* $ssl_client_*`.
pub fn identity_headers() -> Value {
    json!({
        "proxy-rewrite": {
            "headers": {
                "X-Ssl-Client-Fingerprint": "$ssl_client_fingerprint",
                "X-Ssl-Client-Serial": "$ssl_client_serial",
                "X-Ssl-Client-S-DN": "$ssl_client_s_dn"
            }
        }
    })
}

/// A route to `upstream` (`host:port`) with the identity headers; `hosts`
/// empty means any host.
pub fn route(id: &str, uri: &str, hosts: &[String], upstream: &str) -> Value {
    let mut route = json!({
        "id": id,
        "uri": uri,
        "plugins": identity_headers(),
        "upstream": {"type": "roundrobin", "nodes": {upstream: 1}},
    });
    if !hosts.is_empty() {
        route["hosts"] = json!(hosts);
    }
    stamped(route)
}

/// A server SSL object for `sni` requiring client certificates from `ca`.
pub fn ssl(id: &str, sni: &str, leaf: &Leaf, ca_pem: &str) -> Value {
    stamped(json!({
        "id": id,
        "sni": sni,
        "cert": leaf.cert_pem,
        "key": leaf.key_pem,
        "client": {"ca": ca_pem, "depth": 2},
    }))
}

fn stamped(mut value: Value) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    value["create_time"] = json!(now);
    value["update_time"] = json!(now);
    value
}

/// A certificate and its key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Signs ECDSA P-256 server certificates with a CA read from PEM files (the
/// key in PKCS#8).
pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
    pub ca_pem: String,
}

impl Signer {
    pub fn load(ca_cert: &Path, ca_key: &Path) -> anyhow::Result<Signer> {
        let ca_pem = std::fs::read_to_string(ca_cert)
            .with_context(|| format!("reading {}", ca_cert.display()))?;
        let key_pem = std::fs::read_to_string(ca_key)
            .with_context(|| format!("reading {}", ca_key.display()))?;
        let key = KeyPair::from_pem(&key_pem).context("the CA key (PKCS#8 PEM expected)")?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key).context("the CA certificate")?;
        Ok(Signer { issuer, ca_pem })
    }

    /// A fresh key and a server certificate for `name`.
    pub fn server(&self, name: &str) -> anyhow::Result<Leaf> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Checks `value` the way the gateway's watcher will, so that a benchmark
/// never measures objects the gateway skips.
pub fn check(kind: shared::Kind, id: &str, value: &Value) -> anyhow::Result<()> {
    shared::validate::validate(kind, id, value)
        .map(drop)
        .with_context(|| format!("{} {id} would be refused", kind.as_str()))
}
