//! Real PKI for unit tests: the walkthrough's X.509 v1 PKI made with the
//! `openssl` CLI exactly as the APISIX docs make it, v3 PKI made with rcgen,
//! and a way to ask `openssl x509` what it prints for a certificate.

use std::path::Path;
use std::process::Command;
use std::sync::LazyLock;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType,
    SignatureAlgorithm,
};

/// Runs `openssl` in `dir`, panicking with its stderr on failure; returns
/// stdout.
pub(crate) fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is installed");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("openssl prints UTF-8")
}

/// `openssl x509 -noout <args>` on a PEM certificate.
pub(crate) fn openssl_x509(cert_pem: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("c.pem"), cert_pem).expect("write cert");
    let mut all = vec!["x509", "-in", "c.pem", "-noout"];
    all.extend_from_slice(args);
    openssl(dir.path(), &all)
}

/// The PEM files of the APISIX client-mTLS walkthrough.
pub(crate) struct WalkthroughPki {
    pub(crate) ca_cert: String,
    pub(crate) server_cert: String,
    pub(crate) server_key: String,
    pub(crate) client_cert: String,
    pub(crate) client_key: String,
}

/// Made once per test process: RSA key generation is slow.
pub(crate) static WALKTHROUGH: LazyLock<WalkthroughPki> = LazyLock::new(walkthrough_pki);

/// The walkthrough's commands, verbatim (`-extensions` without `-extfile`
/// is ignored, so every certificate is X.509 v1).
fn walkthrough_pki() -> WalkthroughPki {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |line: &str| {
        let args: Vec<&str> = line.split(' ').collect();
        openssl(dir.path(), &args);
    };
    run("genrsa -out ca.key 2048");
    run("req -new -sha256 -key ca.key -out ca.csr -subj /CN=ROOTCA");
    run("x509 -req -days 36500 -sha256 -extensions v3_ca -signkey ca.key -in ca.csr -out ca.cer");
    for (name, cn) in [("server", "test.com"), ("client", "CLIENT")] {
        run(&format!("genrsa -out {name}.key 2048"));
        run(&format!(
            "req -new -sha256 -key {name}.key -out {name}.csr -subj /CN={cn}"
        ));
        run(&format!(
            "x509 -req -days 36500 -sha256 -extensions v3_req -CA ca.cer -CAkey ca.key \
             -CAserial ca.srl -CAcreateserial -in {name}.csr -out {name}.cer"
        ));
    }
    let read = |file: &str| std::fs::read_to_string(dir.path().join(file)).expect("openssl output");
    WalkthroughPki {
        ca_cert: read("ca.cer"),
        server_cert: read("server.cer"),
        server_key: read("server.key"),
        client_cert: read("client.cer"),
        client_key: read("client.key"),
    }
}

/// A v3 certificate and its PKCS#8 key, PEM.
pub(crate) struct Issued {
    pub(crate) cert: String,
    pub(crate) key: String,
}

/// A v3 CA that can issue leaves.
pub(crate) struct TestCa {
    pub(crate) issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub(crate) fn new(cn: &str, alg: &'static SignatureAlgorithm) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate_for(alg).expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA cert"),
        }
    }

    pub(crate) fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `names` (DNS names) plus any extra SANs.
    pub(crate) fn leaf(
        &self,
        cn: &str,
        names: &[&str],
        extra: Vec<SanType>,
        alg: &'static SignatureAlgorithm,
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names.extend(extra);
        let key = KeyPair::generate_for(alg).expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}
