//! Client certificates whose status is published online, on loopback: each
//! names an OCSP responder (Authority Information Access) and a CRL
//! distribution point. One index drives both: `openssl ocsp` answers from it
//! (and re-reads it when it changes), and the CRL served by [`CrlServer`] is
//! generated from it by `openssl ca -gencrl`.
//!
//! Clients: `good` (valid in the index), `revoked` (revoked in it) and
//! `unknown` (absent: the responder answers `unknown`, the CRL does not
//! list it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net::free_port;
use crate::ocsp::OcspResponder;
use crate::pki::openssl_in;
use crate::server_thread::ServerThread;

/// Far enough for any test; the index needs an expiry date.
const INDEX_EXPIRY: &str = "351231235959Z";
const CLIENTS: [(&str, &str); 3] = [("good", "1001"), ("revoked", "1002"), ("unknown", "1003")];
const CA_CONFIG: &str = "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\n\
     crlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 1\n";

#[derive(Debug)]
pub struct RevocationPki {
    /// The responder's port named in the certificates.
    pub ocsp_port: u16,
    /// The CRL server's port named in the certificates.
    pub crl_port: u16,
    dir: TempDir,
}

impl RevocationPki {
    pub fn new() -> crate::Result<RevocationPki> {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-revocation-")
            .tempdir()?;
        let (ocsp_port, crl_port) = (free_port(), free_port());
        let pki = RevocationPki {
            ocsp_port,
            crl_port,
            dir,
        };
        let ext = format!(
            "extendedKeyUsage=clientAuth\n\
             authorityInfoAccess=OCSP;URI:http://127.0.0.1:{ocsp_port}/\n\
             crlDistributionPoints=URI:http://127.0.0.1:{crl_port}/ca.crl\n"
        );
        std::fs::write(pki.path("client.ext"), ext)?;
        std::fs::write(pki.path("ca.cnf"), CA_CONFIG)?;
        std::fs::write(pki.path("crlnumber"), "01\n")?;
        std::fs::write(pki.path("index.txt.attr"), "unique_subject = no\n")?;
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        pki.openssl(&format!(
            "req -x509 -new {ec} -keyout ca.key -out ca.cer -days 3650 \
             -subj /CN=Revocation_Test_CA -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ))?;
        for (name, serial) in CLIENTS {
            pki.openssl(&format!(
                "req -new {ec} -keyout {name}.key -out {name}.csr -subj /CN={name}"
            ))?;
            pki.openssl(&format!(
                "x509 -req -in {name}.csr -CA ca.cer -CAkey ca.key -set_serial 0x{serial} \
                 -out {name}.cer -days 365 -extfile client.ext"
            ))?;
        }
        pki.publish(&["revoked"])?;
        Ok(pki)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.path("ca.cer")).unwrap_or_else(|e| panic!("ca.cer: {e}"))
    }

    /// What the responder logged.
    pub fn responder_log(&self) -> String {
        std::fs::read_to_string(self.path("responder.log")).unwrap_or_default()
    }

    /// curl's `--cert`/`--key` for client `name`.
    pub fn curl_args(&self, name: &str) -> Vec<String> {
        let file = |ext: &str| self.path(&format!("{name}.{ext}")).display().to_string();
        vec!["--cert".into(), file("cer"), "--key".into(), file("key")]
    }

    /// Rewrites the index with `revoked` revoked and `good` valid (`unknown`
    /// stays absent), and the CRL from it.
    pub fn publish(&self, revoked: &[&str]) -> crate::Result<()> {
        let index: String = CLIENTS
            .iter()
            .filter(|(name, _)| *name != "unknown")
            .map(|(name, serial)| {
                let (state, revoked_at) = if revoked.contains(name) {
                    ("R", "250101000000Z")
                } else {
                    ("V", "")
                };
                format!("{state}\t{INDEX_EXPIRY}\t{revoked_at}\t{serial}\tunknown\t/CN={name}\n")
            })
            .collect();
        // A new inode: the responder notices a change by stat(2), in whole
        // seconds, so an in-place rewrite within the second would go unseen.
        std::fs::write(self.path("index.txt.new"), index)?;
        std::fs::rename(self.path("index.txt.new"), self.path("index.txt"))?;
        self.openssl("ca -gencrl -config ca.cnf -cert ca.cer -keyfile ca.key -out ca.pem.crl")?;
        self.openssl("crl -in ca.pem.crl -outform DER -out ca.crl")?;
        Ok(())
    }

    /// `openssl ocsp` on [`RevocationPki::ocsp_port`], signing with the CA;
    /// `nextUpdate` `next_update_minutes` after each answer.
    pub async fn responder(&self, next_update_minutes: u32) -> crate::Result<OcspResponder> {
        OcspResponder::start_in(self.dir.path(), self.ocsp_port, next_update_minutes).await
    }

    fn openssl(&self, line: &str) -> crate::Result<()> {
        openssl_in(self.dir.path(), line)
    }
}

/// Serves the CRL file of a [`RevocationPki`] (read on each request) on its
/// CRL port, to any GET. Stopped on drop.
#[derive(Debug)]
pub struct CrlServer {
    _server: ServerThread,
}

impl CrlServer {
    pub fn start(pki: &RevocationPki) -> crate::Result<CrlServer> {
        let file = pki.path("ca.crl");
        let addr = SocketAddr::from(([127, 0, 0, 1], pki.crl_port));
        let server = ServerThread::spawn("crl", addr, move |stream| serve(stream, file.clone()))?;
        Ok(CrlServer { _server: server })
    }
}

async fn serve(mut stream: TcpStream, file: PathBuf) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let body = read_crl(&file);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

fn read_crl(file: &Path) -> Vec<u8> {
    std::fs::read(file).unwrap_or_default()
}
