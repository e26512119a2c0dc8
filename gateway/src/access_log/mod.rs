//! The access log (`proxy.access_log`): one line per request, JSON or nginx
//! `combined`, to standard output or a file.
//!
//! Requests never wait for it: a worker formats the line of a finished
//! request ([`RequestLine`]) at the end of its own batch and goes on; a
//! thread of its own takes every worker's batch each tick (10 ms) and
//! writes it. When the writer falls behind (a slow disk, a full pipe), a
//! worker's batch fills up (`proxy.access_log.buffer` lines per worker
//! thread) and lines are dropped and counted
//! (`portcullis_access_log_dropped_total`), never requests; a file that
//! cannot be opened or written is reported and counted
//! (`portcullis_access_log_write_errors_total`), and traffic goes on.
//!
//! Refused TLS handshakes get a line each too (with the reason), at most
//! [`HANDSHAKE_LINES_PER_SECOND`] a second: a scanner must not flood the log.

mod batch;
mod digits;
mod line;
mod request_id;
mod writer;

use std::cell::OnceCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shared::config::{AccessLogConfig, AccessLogFormat};

pub(crate) use line::{RequestHead, RequestLine};
pub(crate) use request_id::{ensure as ensure_request_id, RequestId};

use batch::{Batch, Batches};
use line::{Clock, HandshakeLine};

use crate::metrics::{self, HandshakeFailure};
use crate::tls::AcceptError;

/// Refused handshakes logged per second at most; the rest are only counted.
pub const HANDSHAKE_LINES_PER_SECOND: u64 = 20;

struct AccessLog {
    batches: Arc<Batches>,
    /// Lines a worker's batch holds at most.
    max_lines: usize,
    format: AccessLogFormat,
}

static LOG: OnceLock<AccessLog> = OnceLock::new();

/// Starts the writer thread, once, unless the log is disabled. A file that
/// cannot be opened is reported here and does not stop the start.
pub fn start(config: &AccessLogConfig) -> std::io::Result<()> {
    if !config.enabled || LOG.get().is_some() {
        return Ok(());
    }
    let batches = Arc::new(Batches::default());
    writer::spawn(config, batches.clone())?;
    let _ = LOG.set(AccessLog {
        batches,
        max_lines: config.buffer,
        format: config.format,
    });
    Ok(())
}

/// How requests are logged; `None`: they are not.
pub(crate) fn format() -> Option<AccessLogFormat> {
    LOG.get().map(|log| log.format)
}

thread_local! {
    /// This thread's batch, registered with the writer on first use.
    static BATCH: OnceCell<Arc<Mutex<Batch>>> = const { OnceCell::new() };
}

/// Logs a finished request.
pub(crate) fn request(line: &RequestLine<'_>) {
    if let Some(log) = LOG.get() {
        send(log, |clock, out| {
            line.format(log.format, clock, out);
            true
        });
    }
}

/// Formats a line into the thread's batch; drops it (counted) when the
/// writer is behind.
fn send(log: &AccessLog, format: impl FnOnce(&mut Clock, &mut String) -> bool) {
    let taken = BATCH.with(|batch| {
        let batch = batch.get_or_init(|| log.batches.register());
        batch::lock(batch).push(log.max_lines, format)
    });
    if !taken {
        metrics::metrics().access_log_dropped.inc();
    }
}

/// Counts and logs (rate-limited) a refused handshake.
pub(crate) fn handshake_refused(peer: SocketAddr, err: &AcceptError) {
    let reason = HandshakeFailure::of(err);
    metrics::tls::handshake_failed(reason, err.ssl_id());
    if within_rate() {
        tracing::info!(peer = %peer, reason = reason.as_str(), error = %err, "TLS handshake refused");
        handshake(&HandshakeLine::new(peer, reason, err.to_string()));
    }
}

/// Counts and logs (rate-limited) a handshake that took too long.
pub(crate) fn handshake_timed_out(peer: SocketAddr, timeout: Duration) {
    metrics::tls::handshake_failed(HandshakeFailure::Timeout, "");
    if within_rate() {
        let error = format!("not completed within proxy.timeouts.handshake ({timeout:?})");
        tracing::info!(peer = %peer, reason = "timeout", %error, "TLS handshake refused");
        handshake(&HandshakeLine::new(peer, HandshakeFailure::Timeout, error));
    }
}

fn handshake(line: &HandshakeLine) {
    if let Some(log) = LOG.get() {
        send(log, |clock, out| line.format(log.format, clock, out));
    }
}

/// Whether another handshake line fits in this second's allowance.
fn within_rate() -> bool {
    static WINDOW: AtomicU64 = AtomicU64::new(0);
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if WINDOW.swap(now, Ordering::Relaxed) != now {
        COUNT.store(0, Ordering::Relaxed);
    }
    COUNT.fetch_add(1, Ordering::Relaxed) < HANDSHAKE_LINES_PER_SECOND
}
