//! A steady request load through a data plane, every response checked, for
//! the tests that prove a fault or a configuration change goes unnoticed by
//! traffic.
//!
//! Every request opens its own connection (and, over TLS, its own handshake
//! against the SNI table in force at that moment), so a configuration swap
//! anywhere on the accept → handshake → route → upstream path shows up as a
//! failed request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

/// One request may take this long before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How many failures a report quotes.
const QUOTED_FAILURES: usize = 10;

/// What the load requests.
#[derive(Clone, Debug)]
pub enum Target {
    /// `GET path` on a plain HTTP listener.
    Http { addr: SocketAddr, path: String },
    /// `GET path` over TLS with SNI and `Host` `server_name`; the served
    /// certificate must chain to `ca_pem`.
    Https {
        addr: SocketAddr,
        server_name: String,
        path: String,
        ca_pem: String,
    },
}

/// What a finished load saw.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub sent: u64,
    /// Requests that did not end in HTTP 200.
    pub failed: u64,
    /// The first failures, each with what went wrong and when.
    pub failures: Vec<String>,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl LoadReport {
    /// Prints the report, then fails unless requests were sent during `what`
    /// and every one of them was answered 200.
    pub fn assert_no_failure(&self, what: &str) {
        eprintln!("{what}: {self}");
        assert!(self.sent > 0, "{what}: no request was sent");
        assert_eq!(
            self.failed, 0,
            "{what}: failed requests: {:?}",
            self.failures
        );
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests, {} failed, latency p50 {:?} p99 {:?} max {:?}",
            self.sent, self.failed, self.p50, self.p99, self.max
        )
    }
}

/// Requests sent at a steady pace by a few workers until [`Load::finish`].
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: JoinSet<Tally>,
}

impl Load {
    /// Starts `workers` workers that together send about `rate` requests a
    /// second to `target`.
    pub fn start(target: Target, rate: u32, workers: usize) -> crate::Result<Load> {
        let client = Arc::new(Client::new(target)?);
        let workers = workers.max(1);
        let stop = Arc::new(AtomicBool::new(false));
        let period = Duration::from_secs_f64(workers as f64 / f64::from(rate.max(1)));
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            let (client, stop) = (Arc::clone(&client), Arc::clone(&stop));
            tasks.spawn(async move {
                let mut tally = Tally::default();
                let mut pace = tokio::time::interval(period);
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::Relaxed) {
                    pace.tick().await;
                    let began = Instant::now();
                    let outcome = client.request().await;
                    tally.record(began, started, outcome);
                }
                tally
            });
        }
        Ok(Load {
            stop,
            workers: tasks,
        })
    }

    /// Stops the workers (each finishes its request in flight) and reports.
    pub async fn finish(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        while let Some(joined) = self.workers.join_next().await {
            match joined {
                Ok(tally) => total.merge(tally),
                // A worker that died took its outcomes with it: that is a failure too.
                Err(err) => total.record_lost_worker(&err),
            }
        }
        total.report()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One worker's outcomes.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    failed: u64,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, began: Instant, started: Instant, outcome: Result<(), String>) {
        self.latencies.push(began.elapsed());
        if let Err(why) = outcome {
            self.failed += 1;
            if self.failures.len() < QUOTED_FAILURES {
                let at = began.duration_since(started);
                self.failures.push(format!("at {at:.2?}: {why}"));
            }
        }
    }

    fn record_lost_worker(&mut self, err: &tokio::task::JoinError) {
        self.failed += 1;
        if self.failures.len() < QUOTED_FAILURES {
            self.failures
                .push(format!("a load worker ended early: {err}"));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.failed += other.failed;
        let room = QUOTED_FAILURES.saturating_sub(self.failures.len());
        self.failures.extend(other.failures.into_iter().take(room));
    }

    fn report(mut self) -> LoadReport {
        self.latencies.sort_unstable();
        LoadReport {
            sent: self.latencies.len() as u64,
            failed: self.failed,
            failures: self.failures,
            p50: percentile(&self.latencies, 50.0),
            p99: percentile(&self.latencies, 99.0),
            max: self.latencies.last().copied().unwrap_or_default(),
        }
    }
}

/// The `pct`th percentile of sorted `values` (nearest rank); zero when empty.
pub fn percentile(sorted: &[Duration], pct: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A prepared client for one target: the TLS settings are built once.
struct Client {
    addr: SocketAddr,
    host: String,
    path: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Client {
    fn new(target: Target) -> crate::Result<Client> {
        Ok(match target {
            Target::Http { addr, path } => Client {
                addr,
                host: addr.to_string(),
                path,
                tls: None,
            },
            Target::Https {
                addr,
                server_name,
                path,
                ca_pem,
            } => {
                let name = ServerName::try_from(server_name.clone())
                    .with_context(|| format!("{server_name} is no server name"))?;
                Client {
                    addr,
                    host: server_name,
                    path,
                    tls: Some((crate::tls_setup::connector(&ca_pem, b"http/1.1")?, name)),
                }
            }
        })
    }

    async fn request(&self) -> Result<(), String> {
        let status = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange())
            .await
            .map_err(|_| format!("no response within {REQUEST_TIMEOUT:?}"))??;
        match status {
            200 => Ok(()),
            other => Err(format!("HTTP {other}")),
        }
    }

    async fn exchange(&self) -> Result<u16, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match &self.tls {
            None => get(TokioIo::new(tcp), &self.host, &self.path).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                get(TokioIo::new(tls), &self.host, &self.path).await
            }
        }
    }
}

/// `GET path` with `Host: host` over `io`; the status once the body is read.
async fn get<I>(io: I, host: &str, path: &str) -> Result<u16, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let request = Request::get(path)
        .header(http::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let outcome = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("response body: {e}"))?;
        Ok(status)
    }
    .await;
    conn.abort();
    outcome
}

/// One `GET path` to a plain HTTP listener: the status and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> crate::Result<(u16, String)> {
    let reply = crate::http::send(addr, http::Method::GET, path, &[], None).await?;
    Ok((
        reply.status,
        String::from_utf8_lossy(&reply.body).into_owned(),
    ))
}

/// The resident set size of process `pid`, in KiB (`VmRSS` in
/// `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> crate::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .with_context(|| format!("no VmRSS in {path}"))?;
    let kib = line.trim().trim_end_matches("kB").trim();
    kib.parse()
        .with_context(|| format!("VmRSS {line:?} in {path}"))
}
