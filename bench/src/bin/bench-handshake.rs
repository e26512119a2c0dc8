//! New-connection loader: every request on a fresh TCP + mTLS connection,
//! with TLS session resumption either off (every handshake full) or on (a
//! session cache shared by all connections). Counts what the server really
//! did (rustls reports each handshake as full or resumed), so a figure is
//! never labelled "resumed" when the server refused to resume, or the
//! reverse.
//!
//! Prints one JSON line: requests/s, latency percentiles, handshake kinds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use benchkit::http::Conn;
use benchkit::stats::Millis;
use benchkit::tls::{client_config, Resume};
use clap::{Parser, ValueEnum};
use rustls::HandshakeKind;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Parser)]
struct Args {
    /// Where the proxy listens.
    #[arg(long)]
    addr: SocketAddr,
    /// SNI and Host.
    #[arg(long)]
    sni: String,
    #[arg(long)]
    path: String,
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Measured seconds (after one second of warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Full,
    Resumed,
}

#[derive(Default)]
struct Counts {
    full: AtomicU64,
    resumed: AtomicU64,
    errors: AtomicU64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let resume = match args.mode {
        Mode::Full => Resume::Never,
        Mode::Resumed => Resume::Always,
    };
    let connector = TlsConnector::from(Arc::new(client_config(
        &args.ca, &args.cert, &args.key, resume,
    )?));
    let name = ServerName::try_from(args.sni.clone()).context("--sni")?;
    let warmup_end = Instant::now() + Duration::from_secs(1);
    let end = warmup_end + Duration::from_secs_f64(args.duration);
    let counts = Arc::new(Counts::default());
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let worker = Worker {
            connector: connector.clone(),
            name: name.clone(),
            addr: args.addr,
            path: args.path.clone(),
            counts: Arc::clone(&counts),
        };
        tasks.push(tokio::spawn(worker.run(warmup_end, end)));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    let ms = Millis::new(&latencies);
    let seconds = args.duration;
    println!(
        "{}",
        serde_json::json!({
            "rps": ms.len() as f64 / seconds,
            "p50_ms": ms.percentile(50.0),
            "p99_ms": ms.percentile(99.0),
            "full": counts.full.load(Ordering::Relaxed),
            "resumed": counts.resumed.load(Ordering::Relaxed),
            "errors": counts.errors.load(Ordering::Relaxed),
        })
    );
    Ok(())
}

struct Worker {
    connector: TlsConnector,
    name: ServerName<'static>,
    addr: SocketAddr,
    path: String,
    counts: Arc<Counts>,
}

impl Worker {
    /// Latencies of the requests that completed after the warm-up.
    async fn run(self, warmup_end: Instant, end: Instant) -> Vec<Duration> {
        let mut latencies = Vec::new();
        loop {
            let started = Instant::now();
            if started >= end {
                return latencies;
            }
            let outcome = self.one().await;
            if started < warmup_end {
                continue;
            }
            match outcome {
                Ok(kind) => {
                    latencies.push(started.elapsed());
                    let counter = match kind {
                        Some(HandshakeKind::Resumed) => &self.counts.resumed,
                        _ => &self.counts.full,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    if self.counts.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("bench-handshake: {err:#}");
                    }
                }
            }
        }
    }

    /// One connection, one request; the handshake kind the server chose.
    async fn one(&self) -> anyhow::Result<Option<HandshakeKind>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = self.connector.connect(self.name.clone(), tcp).await?;
        let mut conn = Conn::new(tls);
        let host = match &self.name {
            ServerName::DnsName(name) => name.as_ref().to_owned(),
            other => format!("{other:?}"),
        };
        let response = conn
            .send("GET", &self.path, &host, &[("Connection", "close")], b"")
            .await?;
        anyhow::ensure!(response.status == 200, "status {}", response.status);
        Ok(conn.get_ref().get_ref().1.handshake_kind())
    }
}
