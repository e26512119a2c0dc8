//! Certificate files with real keys, laid out as Kubernetes mounts a Secret
//! (`tls.crt -> ..data/tls.crt`, `..data -> ..<generation>`), swapped the
//! way the kubelet swaps them.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rcgen::PKCS_ECDSA_P256_SHA256;
use tempfile::TempDir;

use super::reload::{Outcome, Poller};
use super::*;
use crate::x509::test_pki::{Issued, TestCa};

const NAMES: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

/// A mounted Secret: each name is a symlink into `..data`, itself a symlink
/// to the current generation directory.
struct SecretDir {
    dir: TempDir,
    generation: u32,
}

impl SecretDir {
    fn new(files: &[(&str, &str)]) -> SecretDir {
        let mut secret = SecretDir {
            dir: tempfile::tempdir().expect("temp dir"),
            generation: 0,
        };
        secret.swap(files);
        for name in NAMES {
            symlink(Path::new("..data").join(name), secret.path(name)).expect("name symlink");
        }
        secret
    }

    /// Writes a new generation, then atomically points `..data` at it.
    fn swap(&mut self, files: &[(&str, &str)]) {
        self.generation += 1;
        let generation = format!(
            "..2026_11_23_10_00_{:02}.{}",
            self.generation, self.generation
        );
        let dir = self.dir.path().join(&generation);
        std::fs::create_dir(&dir).expect("generation dir");
        for (name, content) in files {
            std::fs::write(dir.join(name), content).expect("write file");
        }
        let tmp = self.dir.path().join("..data_tmp");
        symlink(&generation, &tmp).expect("tmp symlink");
        std::fs::rename(&tmp, self.dir.path().join("..data")).expect("swap ..data");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: Some(PemFile::new("test.tls.cert", self.path("tls.crt"))),
            key: Some(PemFile::new("test.tls.key", self.path("tls.key"))),
            ca: Some(PemFile::new("test.tls.ca", self.path("ca.crt"))),
        }
    }
}

struct Pki {
    ca_pem: String,
    first: Issued,
    second: Issued,
}

impl Pki {
    fn new() -> Pki {
        let ca = TestCa::new("Rotation CA", &PKCS_ECDSA_P256_SHA256);
        let first = ca.leaf("first", &["admin.test"], vec![], &PKCS_ECDSA_P256_SHA256);
        let second = ca.leaf("second", &["admin.test"], vec![], &PKCS_ECDSA_P256_SHA256);
        Pki {
            ca_pem: ca.cert_pem(),
            first,
            second,
        }
    }

    fn secret<'a>(&'a self, leaf: &'a Issued) -> [(&'a str, &'a str); 3] {
        [
            ("tls.crt", leaf.cert.as_str()),
            ("tls.key", leaf.key.as_str()),
            ("ca.crt", self.ca_pem.as_str()),
        ]
    }
}

/// The leaf's CN: what the tests' `build` turns material into.
fn subject(material: &TlsMaterial) -> Result<String, CertFileError> {
    material
        .leaf()
        .map(|leaf| leaf.subject.clone())
        .ok_or_else(|| material.rejected("no leaf"))
}

#[test]
fn loads_a_matching_pair_and_its_ca() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.secret(&pki.first));
    let material = secret.files().load().expect("valid files");
    assert_eq!(material.chain().len(), 1);
    assert_eq!(material.roots().len(), 1);
    assert!(material.key().is_some());
    assert_eq!(
        material.leaf().map(|l| l.subject.as_str()),
        Some("CN=first")
    );
    let (cert_pem, key_pem) = material.identity_pem().expect("identity");
    assert_eq!(cert_pem, pki.first.cert);
    assert_eq!(key_pem, pki.first.key);
    assert_eq!(material.roots_pem(), Some(pki.ca_pem.as_str()));
}

#[test]
fn refuses_a_key_of_another_certificate() {
    let pki = Pki::new();
    let secret = SecretDir::new(&[
        ("tls.crt", &pki.first.cert),
        ("tls.key", &pki.second.key),
        ("ca.crt", &pki.ca_pem),
    ]);
    let err = secret.files().load().expect_err("mismatched pair");
    assert!(matches!(err, CertFileError::KeyMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("test.tls.key") && msg.contains("tls.key") && msg.contains("test.tls.cert"),
        "{msg}"
    );
}

#[test]
fn names_the_file_that_cannot_be_read() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.secret(&pki.first));
    let mut files = secret.files();
    files.ca = Some(PemFile::new("test.tls.ca", secret.path("missing.crt")));
    let msg = files.load().expect_err("missing file").to_string();
    assert!(
        msg.starts_with("test.tls.ca (")
            && msg.contains("missing.crt")
            && msg.contains("cannot read"),
        "{msg}"
    );
}

#[test]
fn names_the_file_that_is_not_pem() {
    let pki = Pki::new();
    let secret = SecretDir::new(&[
        ("tls.crt", "garbage"),
        ("tls.key", &pki.first.key),
        ("ca.crt", &pki.ca_pem),
    ]);
    let err = secret.files().load().expect_err("garbage certificate");
    assert!(
        matches!(err, CertFileError::Invalid { ref file, .. } if file.setting == "test.tls.cert"),
        "{err:?}"
    );
    let secret = SecretDir::new(&[
        ("tls.crt", &pki.first.cert),
        ("tls.key", &pki.first.cert),
        ("ca.crt", &pki.ca_pem),
    ]);
    let msg = secret
        .files()
        .load()
        .expect_err("a certificate is no key")
        .to_string();
    assert!(
        msg.contains("test.tls.key") && msg.contains("private key"),
        "{msg}"
    );
}

#[test]
fn a_certificate_needs_its_key() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.secret(&pki.first));
    let mut files = secret.files();
    files.key = None;
    let err = files.load().expect_err("no key");
    assert!(matches!(err, CertFileError::Incomplete { .. }), "{err:?}");
    files.cert = None;
    let material = files.load().expect("a CA alone is fine");
    assert!(material.identity_pem().is_none() && material.leaf().is_none());
}

#[test]
fn debug_never_shows_the_key() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.secret(&pki.first));
    let material = secret.files().load().expect("valid");
    let debug = format!("{material:?}");
    assert!(debug.contains("<redacted>"), "{debug}");
    assert!(
        !debug.contains("PRIVATE KEY") && !debug.contains(&pki.first.key[40..80]),
        "{debug}"
    );
}

#[tokio::test]
async fn poll_follows_swaps_and_keeps_the_old_material_on_bad_files() {
    let pki = Pki::new();
    let mut secret = SecretDir::new(&pki.secret(&pki.first));
    let current = Arc::new(ArcSwap::from_pointee(
        subject(&secret.files().load().expect("valid")).expect("cn"),
    ));
    let (mut poller, mut updates) = Poller::for_test(secret.files(), subject, &current);
    assert_eq!(poller.poll(&current).await, Outcome::Unchanged);

    secret.swap(&pki.secret(&pki.second));
    assert_eq!(poller.poll(&current).await, Outcome::Reloaded);
    assert_eq!(*current.load_full(), "CN=second");
    assert!(updates.has_changed().expect("open"), "subscribers are told");
    assert_eq!(**updates.borrow_and_update(), "CN=second");

    // A broken certificate: refused once, then left alone; the old one stays.
    secret.swap(&[
        (
            "tls.crt",
            "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
        ),
        ("tls.key", &pki.first.key),
        ("ca.crt", &pki.ca_pem),
    ]);
    assert_eq!(poller.poll(&current).await, Outcome::Refused);
    assert_eq!(poller.poll(&current).await, Outcome::Unchanged);
    assert_eq!(*current.load_full(), "CN=second");
    assert!(!updates.has_changed().expect("open"));

    // A generation without the key file: unreadable, old material stays.
    secret.swap(&[("tls.crt", &pki.first.cert), ("ca.crt", &pki.ca_pem)]);
    assert_eq!(poller.poll(&current).await, Outcome::Unreadable);
    assert_eq!(*current.load_full(), "CN=second");

    // Fixed files are picked up again.
    secret.swap(&pki.secret(&pki.first));
    assert_eq!(poller.poll(&current).await, Outcome::Reloaded);
    assert_eq!(*current.load_full(), "CN=first");
}

#[tokio::test]
async fn poll_refuses_what_the_consumer_cannot_use() {
    let pki = Pki::new();
    let mut secret = SecretDir::new(&pki.secret(&pki.first));
    let current = Arc::new(ArcSwap::from_pointee("CN=first".to_owned()));
    let picky = |material: &TlsMaterial| match subject(material)? {
        cn if cn == "CN=first" => Ok(cn),
        _ => Err(material.rejected("only the first certificate will do")),
    };
    let (mut poller, _updates) = Poller::for_test(secret.files(), picky, &current);
    secret.swap(&pki.secret(&pki.second));
    assert_eq!(poller.poll(&current).await, Outcome::Refused);
    assert_eq!(*current.load_full(), "CN=first");
}

#[tokio::test]
async fn reloading_picks_up_a_swap_by_itself() {
    let pki = Pki::new();
    let mut secret = SecretDir::new(&pki.secret(&pki.first));
    let reloading = Reloading::start_polling(secret.files(), Duration::from_millis(10), subject)
        .expect("valid files");
    assert_eq!(*reloading.current(), "CN=first");
    let mut updates = reloading.subscribe();
    secret.swap(&pki.secret(&pki.second));
    tokio::time::timeout(Duration::from_secs(10), updates.changed())
        .await
        .expect("reloaded in time")
        .expect("poller alive");
    assert_eq!(**updates.borrow(), "CN=second");
    assert_eq!(*reloading.current(), "CN=second");
}

#[tokio::test]
async fn refuses_to_start_on_bad_files() {
    let pki = Pki::new();
    let secret = SecretDir::new(&[
        ("tls.crt", &pki.first.cert),
        ("tls.key", &pki.second.key),
        ("ca.crt", &pki.ca_pem),
    ]);
    let started = Reloading::start(secret.files(), subject);
    assert!(matches!(started, Err(CertFileError::KeyMismatch { .. })));
}

#[tokio::test]
async fn polling_stops_when_every_handle_is_dropped() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.secret(&pki.first));
    let reloading = Reloading::start_polling(secret.files(), Duration::from_millis(10), subject)
        .expect("valid files");
    let mut updates = reloading.subscribe();
    drop(reloading);
    let deadline = Instant::now() + Duration::from_secs(10);
    let closed = tokio::time::timeout_at(deadline.into(), updates.changed()).await;
    assert!(
        matches!(closed, Ok(Err(_))),
        "the poller must end and close the channel"
    );
}
