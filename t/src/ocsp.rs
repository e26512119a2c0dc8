//! A real OCSP responder (`openssl ocsp -index … -port …` on a free
//! loopback port) and the PKI it answers for: a CA and a server certificate
//! whose Authority Information Access names the responder.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::net::{accepts, free_port};
use crate::process::Process;
use crate::wait::wait_until;

/// Far enough for any test; the index needs an expiry date.
const INDEX_EXPIRY: &str = "351231235959Z";

/// A CA, a server certificate for `ocsp.test` (`server.cer`, `server.key`;
/// `chain.pem` is the certificate then the CA) and the responder's index.
#[derive(Debug)]
pub struct OcspPki {
    /// The port named in the certificate's OCSP URL.
    pub port: u16,
    serial: String,
    dir: TempDir,
}

impl OcspPki {
    /// Makes the PKI; the certificate is `good` in the index.
    pub fn new() -> crate::Result<OcspPki> {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-ocsp-")
            .tempdir()?;
        let port = free_port();
        let ext = format!(
            "subjectAltName=DNS:ocsp.test\nauthorityInfoAccess=OCSP;URI:http://127.0.0.1:{port}/\n"
        );
        std::fs::write(dir.path().join("server.ext"), ext)?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(
            dir.path(),
            &[
                &["req", "-x509", "-new"],
                &ec[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.cer",
                    "-days",
                    "3650",
                    "-subj",
                    "/CN=OCSP Test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        )?;
        run(
            dir.path(),
            &[
                &["req", "-new"],
                &ec[..],
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=ocsp.test",
                ],
            ]
            .concat(),
        )?;
        run(
            dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.cer",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.cer",
                "-days",
                "365",
                "-extfile",
                "server.ext",
            ],
        )?;
        let serial = run(
            dir.path(),
            &["x509", "-in", "server.cer", "-noout", "-serial"],
        )?;
        let serial = serial.trim().trim_start_matches("serial=").to_owned();
        let chain = [read(dir.path(), "server.cer")?, read(dir.path(), "ca.cer")?].concat();
        std::fs::write(dir.path().join("chain.pem"), chain)?;
        let pki = OcspPki { port, serial, dir };
        pki.set_revoked(false)?;
        Ok(pki)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn read(&self, file: &str) -> String {
        read(self.dir.path(), file).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Writes the index with the server certificate valid or revoked (a
    /// responder started afterwards answers accordingly).
    pub fn set_revoked(&self, revoked: bool) -> crate::Result<()> {
        let line = if revoked {
            format!(
                "R\t{INDEX_EXPIRY}\t250101000000Z\t{}\tunknown\t/CN=ocsp.test\n",
                self.serial
            )
        } else {
            format!(
                "V\t{INDEX_EXPIRY}\t\t{}\tunknown\t/CN=ocsp.test\n",
                self.serial
            )
        };
        std::fs::write(self.path("index.txt"), line)?;
        std::fs::write(self.path("index.txt.attr"), "unique_subject = no\n")?;
        Ok(())
    }
}

/// `openssl ocsp` answering for an [`OcspPki`] on its port, signing with
/// the CA; `nextUpdate` is `next_update_minutes` after each answer. Killed
/// on drop.
#[derive(Debug)]
pub struct OcspResponder {
    _process: Process,
}

impl OcspResponder {
    pub async fn start(pki: &OcspPki, next_update_minutes: u32) -> crate::Result<OcspResponder> {
        OcspResponder::start_in(pki.dir.path(), pki.port, next_update_minutes).await
    }

    /// The same for any directory holding `index.txt`, `ca.cer` and
    /// `ca.key`; logs to `responder.log` there.
    pub async fn start_in(
        dir: &Path,
        port: u16,
        next_update_minutes: u32,
    ) -> crate::Result<OcspResponder> {
        let mut cmd = Command::new("openssl");
        cmd.current_dir(dir).args([
            "ocsp",
            "-index",
            "index.txt",
            "-port",
            &port.to_string(),
            "-rsigner",
            "ca.cer",
            "-rkey",
            "ca.key",
            "-CA",
            "ca.cer",
            "-nmin",
            &next_update_minutes.to_string(),
            "-ignore_err",
        ]);
        let log = dir.join("responder.log");
        let mut process = Process::spawn("openssl ocsp", cmd, &log)?;
        // Not a probe connection: openssl 3.0's responder hangs on a client
        // that closes without sending anything.
        process
            .wait_ready(Duration::from_secs(10), || {
                let log = log.clone();
                async move {
                    std::fs::read_to_string(log)
                        .is_ok_and(|text| text.contains("waiting for OCSP client connections"))
                }
            })
            .await
            .with_context(|| {
                format!(
                    "responder log: {}",
                    read(dir, "responder.log").unwrap_or_default()
                )
            })?;
        Ok(OcspResponder { _process: process })
    }

    /// Waits until nothing listens on the port any more.
    pub async fn stop(self, pki: &OcspPki) -> crate::Result<()> {
        drop(self);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], pki.port));
        wait_until(
            "the OCSP responder to stop",
            Duration::from_secs(10),
            || async move { !accepts(addr).await },
        )
        .await
    }
}

fn run(dir: &Path, args: &[&str]) -> crate::Result<String> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("cannot run openssl")?;
    if !output.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn read(dir: &Path, file: &str) -> crate::Result<String> {
    std::fs::read_to_string(dir.join(file)).with_context(|| format!("cannot read {file}"))
}
