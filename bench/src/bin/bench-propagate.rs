//! Configuration propagation: the time from an admin `PUT` to the first
//! request the gateway serves with it, update after update.
//!
//! * `--kind route`: `PUT` a new route `/prop/<tag>/<i>`, then poll it over
//!   one keep-alive mTLS connection until it answers 200 (404 before);
//! * `--kind ssl`: `PUT` a new SSL object for `p<i>.<tag>.prop.test`, then
//!   open a new mTLS connection with that SNI until the handshake succeeds
//!   and `/bench` answers 200.
//!
//! Polls are 1 ms apart (the figures are ±1 ms): polling flat out would steal
//! CPU from the very rebuild being timed. Prints one JSON line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use benchkit::http::Conn;
use benchkit::objects::{self, Leaf, Signer};
use benchkit::stats::Millis;
use benchkit::tls::{client_config, Resume};
use clap::{Parser, ValueEnum};
use rustls_pki_types::ServerName;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const POLL_INTERVAL: Duration = Duration::from_millis(1);
const GIVE_UP: Duration = Duration::from_secs(30);

#[derive(Parser)]
struct Args {
    #[arg(long)]
    admin: SocketAddr,
    #[arg(long)]
    api_key: String,
    #[arg(long)]
    gateway: SocketAddr,
    /// The SNI of an existing SSL object, for polling routes.
    #[arg(long)]
    sni: String,
    /// CA the client trusts and that signs new server certificates (PEM),
    /// its PKCS#8 key, and the client certificate and key it signed.
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    ca_key: PathBuf,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    #[arg(long, value_enum)]
    kind: Kind,
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// `host:port` new routes proxy to.
    #[arg(long)]
    upstream: String,
    /// Distinguishes the objects of one run from another's.
    #[arg(long)]
    tag: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Route,
    Ssl,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let connector = TlsConnector::from(Arc::new(client_config(
        &args.ca,
        &args.cert,
        &args.key,
        Resume::Never,
    )?));
    let signer = Signer::load(&args.ca, &args.ca_key)?;
    let mut admin = Conn::new(
        TcpStream::connect(args.admin)
            .await
            .context("connecting to the admin API")?,
    );
    let mut probe = Probe {
        connector,
        gateway: args.gateway,
        conn: None,
    };
    // The first TLS connection of a process pays one-time set-up (~20 ms);
    // pay it before the clock runs.
    let warm_up = Update {
        path: String::new(),
        body: String::new(),
        sni: args.sni.clone(),
        uri: "/bench".to_owned(),
    };
    anyhow::ensure!(
        probe.served(&warm_up).await,
        "GET /bench on {} is not served",
        args.sni
    );
    probe.conn = None;
    let (mut served, mut puts) = (Vec::new(), Vec::new());
    for i in 0..args.count {
        let update = Update::new(&args, &signer, i)?;
        let started = Instant::now();
        let response = admin
            .send(
                "PUT",
                &update.path,
                "admin",
                &[
                    ("X-API-KEY", &args.api_key),
                    ("Content-Type", "application/json"),
                ],
                update.body.as_bytes(),
            )
            .await?;
        if !matches!(response.status, 200 | 201) {
            bail!(
                "PUT {} answered {}: {}",
                update.path,
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        puts.push(started.elapsed());
        loop {
            if probe.served(&update).await {
                break;
            }
            if started.elapsed() > GIVE_UP {
                bail!("{} not served {GIVE_UP:?} after its PUT", update.path);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        served.push(started.elapsed());
    }
    let (served, puts) = (Millis::new(&served), Millis::new(&puts));
    println!(
        "{}",
        json!({
            "kind": match args.kind { Kind::Route => "route", Kind::Ssl => "ssl" },
            "count": served.len(),
            "p50_ms": served.percentile(50.0),
            "p99_ms": served.percentile(99.0),
            "max_ms": served.max(),
            "put_p50_ms": puts.percentile(50.0),
            "put_p99_ms": puts.percentile(99.0),
        })
    );
    Ok(())
}

/// One admin write and how to tell it is served.
struct Update {
    path: String,
    body: String,
    /// The SNI to connect with (a new SSL object), or that of the existing one.
    sni: String,
    /// The URI that answers 200 once served.
    uri: String,
}

impl Update {
    fn new(args: &Args, signer: &Signer, i: usize) -> anyhow::Result<Update> {
        let id = format!("prop-{}-{i}", args.tag);
        Ok(match args.kind {
            Kind::Route => {
                let uri = format!("/prop/{}/{i}", args.tag);
                let body = objects::route(&id, &uri, &[], &args.upstream);
                Update {
                    path: format!("/apisix/admin/routes/{id}"),
                    body: admin_body(body),
                    sni: args.sni.clone(),
                    uri,
                }
            }
            Kind::Ssl => {
                let sni = format!("p{i}.{}.prop.test", args.tag);
                let leaf: Leaf = signer.server(&sni)?;
                let body = objects::ssl(&id, &sni, &leaf, &signer.ca_pem);
                Update {
                    path: format!("/apisix/admin/ssls/{id}"),
                    body: admin_body(body),
                    sni,
                    uri: "/bench".to_owned(),
                }
            }
        })
    }
}

/// What a client sends: the stored form without the fields the admin API
/// maintains.
fn admin_body(mut value: Value) -> String {
    if let Some(fields) = value.as_object_mut() {
        for field in ["id", "create_time", "update_time"] {
            fields.remove(field);
        }
    }
    value.to_string()
}

/// Polls the gateway; keeps one connection per SNI while it works.
struct Probe {
    connector: TlsConnector,
    gateway: SocketAddr,
    conn: Option<(String, Conn<TlsStream<TcpStream>>)>,
}

impl Probe {
    async fn served(&mut self, update: &Update) -> bool {
        let reuse = matches!(&self.conn, Some((sni, _)) if *sni == update.sni);
        if !reuse {
            self.conn = match self.connect(&update.sni).await {
                Ok(conn) => Some((update.sni.clone(), conn)),
                Err(_) => return false,
            };
        }
        let Some((_, conn)) = self.conn.as_mut() else {
            return false;
        };
        match conn.send("GET", &update.uri, &update.sni, &[], b"").await {
            Ok(response) => {
                if response.closing {
                    self.conn = None;
                }
                response.status == 200
            }
            Err(_) => {
                self.conn = None;
                false
            }
        }
    }

    async fn connect(&self, sni: &str) -> anyhow::Result<Conn<TlsStream<TcpStream>>> {
        let tcp = TcpStream::connect(self.gateway).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(sni.to_owned())?;
        Ok(Conn::new(self.connector.connect(name, tcp).await?))
    }
}
