//! The access log (`proxy.access_log`): one line per request, JSON or nginx
//! `combined`, to standard output or a file.
//!
//! Requests never wait for it: a worker formats the line of a finished
//! request ([`RequestLine`]), hands it to a bounded channel and goes on; a
//! thread of its own writes the lines. When the writer falls behind (a slow
//! disk, a full pipe), lines are dropped and counted
//! (`portcullis_access_log_dropped_total`), never requests; a file that
//! cannot be opened or written is reported and counted
//! (`portcullis_access_log_write_errors_total`), and traffic goes on.
//!
//! Refused TLS handshakes get a line each too (with the reason), at most
//! [`HANDSHAKE_LINES_PER_SECOND`] a second: a scanner must not flood the log.

mod digits;
mod line;
mod request_id;
mod writer;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shared::config::{AccessLogConfig, AccessLogFormat};

pub(crate) use line::{RequestHead, RequestLine};
pub(crate) use request_id::ensure as ensure_request_id;

use line::{Clock, HandshakeLine};

use crate::metrics::{self, HandshakeFailure};
use crate::tls::AcceptError;

/// Refused handshakes logged per second at most; the rest are only counted.
pub const HANDSHAKE_LINES_PER_SECOND: u64 = 20;

/// What the writer thread is sent: one formatted line, newline included.
type Line = Box<str>;

struct AccessLog {
    sender: SyncSender<Line>,
    format: AccessLogFormat,
}

static LOG: OnceLock<AccessLog> = OnceLock::new();

/// Starts the writer thread, once, unless the log is disabled. A file that
/// cannot be opened is reported here and does not stop the start.
pub fn start(config: &AccessLogConfig) -> std::io::Result<()> {
    if !config.enabled || LOG.get().is_some() {
        return Ok(());
    }
    let (sender, receiver) = sync_channel(config.buffer);
    writer::spawn(config, receiver)?;
    let _ = LOG.set(AccessLog {
        sender,
        format: config.format,
    });
    Ok(())
}

/// How requests are logged; `None`: they are not.
pub(crate) fn format() -> Option<AccessLogFormat> {
    LOG.get().map(|log| log.format)
}

thread_local! {
    /// Each worker formats its lines here, then copies them out.
    static SCRATCH: RefCell<(Clock, String)> = RefCell::new((Clock::default(), String::with_capacity(1024)));
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

/// Formats a line with the thread's clock and buffer and hands it to the
/// writer; drops it (counted) when the writer is behind.
fn send(log: &AccessLog, format: impl FnOnce(&mut Clock, &mut String) -> bool) {
    let line = SCRATCH.with(|scratch| {
        let (clock, out) = &mut *scratch.borrow_mut();
        out.clear();
        format(clock, out).then(|| {
            out.push('\n');
            Box::from(out.as_str())
        })
    });
    let Some(line) = line else {
        return;
    };
    match log.sender.try_send(line) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => metrics::metrics().access_log_dropped.inc(),
        // The writer is gone: nothing to log to.
        Err(TrySendError::Disconnected(_)) => metrics::metrics().access_log_errors.inc(),
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
