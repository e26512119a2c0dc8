//! The access-log writer thread: every tick, takes each worker's batch of
//! lines and writes it whole. A batch is its own buffer: written in one
//! call, not copied into a `BufWriter` first.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::config::AccessLogConfig;

use super::batch::Batches;
use crate::metrics::metrics;

/// How long the writer sleeps once it has written everything: about the
/// most a line waits before it is written.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How often a file that cannot be opened is tried again.
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

pub(super) fn spawn(config: &AccessLogConfig, batches: Arc<Batches>) -> io::Result<()> {
    let mut writer = Writer {
        sink: Sink::new(config.path.clone()),
    };
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || writer.run(&batches))?;
    Ok(())
}

struct Writer {
    sink: Sink,
}

impl Writer {
    /// Polls rather than being woken: a wake-up is a system call, which
    /// every request would pay; a sleeping poller costs the workers nothing.
    fn run(&mut self, batches: &Batches) {
        let mut spare = String::new();
        loop {
            batches.take(&mut spare, |text, lines| self.sink.write(text, lines));
            self.sink.flush();
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// Standard output, or a file opened for appending.
struct Sink {
    path: Option<PathBuf>,
    out: Option<Box<dyn Write + Send>>,
    last_attempt: Option<Instant>,
    /// Whether the current failure was logged already.
    failing: bool,
}

impl Sink {
    fn new(path: Option<PathBuf>) -> Sink {
        let mut sink = Sink {
            path,
            out: None,
            last_attempt: None,
            failing: false,
        };
        sink.open();
        sink
    }

    fn open(&mut self) {
        self.last_attempt = Some(Instant::now());
        let opened: io::Result<Box<dyn Write + Send>> = match &self.path {
            None => Ok(Box::new(io::stdout())),
            Some(path) => append(path).map(|file| Box::new(file) as Box<dyn Write + Send>),
        };
        match opened {
            Ok(out) => {
                if self.failing {
                    tracing::info!(path = ?self.path, "access log writable again");
                }
                self.failing = false;
                self.out = Some(out);
            }
            Err(err) => self.failed(&err),
        }
    }

    /// Writes `lines` lines, or counts them as lost.
    fn write(&mut self, text: &str, lines: usize) {
        if self.out.is_none()
            && self
                .last_attempt
                .is_none_or(|at| at.elapsed() >= REOPEN_INTERVAL)
        {
            self.open();
        }
        let lost = lines as u64;
        let Some(out) = &mut self.out else {
            metrics().access_log_errors.inc_by(lost);
            return;
        };
        if let Err(err) = out.write_all(text.as_bytes()) {
            metrics().access_log_errors.inc_by(lost);
            self.out = None;
            self.failed(&err);
        }
    }

    fn flush(&mut self) {
        let Some(out) = &mut self.out else {
            return;
        };
        if let Err(err) = out.flush() {
            metrics().access_log_errors.inc();
            self.out = None;
            self.failed(&err);
        }
    }

    /// Logs the first error of a run of failures; lines are counted as lost
    /// until the log can be written again.
    fn failed(&mut self, err: &io::Error) {
        if !self.failing {
            tracing::error!(path = ?self.path, %err, "cannot write the access log; lines are lost until it can (traffic is not affected)");
        }
        self.failing = true;
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}
