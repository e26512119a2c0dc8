//! [`Reloading`]: a value built from certificate files, rebuilt when they
//! change, read lock-free by every new connection.

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::material::{CertFileError, Contents, TlsFiles, TlsMaterial};

/// How often the files are read again. Reading three small files a second
/// is cheap; a rotated certificate is in use a second after it lands.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A value (a rustls `ServerConfig`, etcd TLS options, …) built from
/// certificate files and rebuilt whenever their contents change.
///
/// Cloning is cheap; every clone sees the same value. The polling task stops
/// once every clone is dropped.
pub struct Reloading<T> {
    current: Arc<ArcSwap<T>>,
    updates: watch::Receiver<Arc<T>>,
}

impl<T> Clone for Reloading<T> {
    fn clone(&self) -> Self {
        Reloading {
            current: Arc::clone(&self.current),
            updates: self.updates.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Loads `files` now, builds the first value, and polls the files every
    /// [`POLL_INTERVAL`] on the current tokio runtime. An error here means
    /// the files are unusable now: the caller should refuse to start.
    pub fn start<B>(files: TlsFiles, build: B) -> Result<Reloading<T>, CertFileError>
    where
        B: FnMut(&TlsMaterial) -> Result<T, CertFileError> + Send + 'static,
    {
        Reloading::start_polling(files, POLL_INTERVAL, build)
    }

    /// [`Reloading::start`] with another poll interval.
    pub fn start_polling<B>(
        files: TlsFiles,
        interval: Duration,
        mut build: B,
    ) -> Result<Reloading<T>, CertFileError>
    where
        B: FnMut(&TlsMaterial) -> Result<T, CertFileError> + Send + 'static,
    {
        let contents = files.read()?;
        let material = TlsMaterial::parse(&files, &contents)?;
        let first = Arc::new(build(&material)?);
        log_loaded(&material, "certificate files loaded");
        let current = Arc::new(ArcSwap::new(Arc::clone(&first)));
        let (tx, updates) = watch::channel(first);
        let poller = Poller {
            files: Arc::new(files),
            build,
            seen: contents.digest(),
            read_failure: None,
            current: Arc::downgrade(&current),
            tx,
        };
        tokio::spawn(poller.run(interval));
        Ok(Reloading { current, updates })
    }

    /// The value built from the newest valid files.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// A receiver that wakes up on every later reload, with the new value.
    pub fn subscribe(&self) -> watch::Receiver<Arc<T>> {
        let mut updates = self.updates.clone();
        updates.mark_unchanged();
        updates
    }
}

/// What one look at the files found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Same bytes as last time (accepted or refused).
    Unchanged,
    /// New valid files: the new value is in use.
    Reloaded,
    /// New files that cannot be used: refused and logged; the old value stays.
    Refused,
    /// The files changed again while being checked: look again next time.
    Unsettled,
    /// A file cannot be read: logged once; the old value stays.
    Unreadable,
}

/// The task behind a [`Reloading`].
pub(crate) struct Poller<T, B> {
    files: Arc<TlsFiles>,
    build: B,
    /// The bytes last acted on, accepted or refused: the same bytes are
    /// neither rebuilt nor reported twice.
    seen: [u8; 32],
    /// The last read failure reported, so a missing file is reported once
    /// rather than every second.
    read_failure: Option<String>,
    /// Weak: the handles own the value; the task ends when they are gone.
    current: Weak<ArcSwap<T>>,
    tx: watch::Sender<Arc<T>>,
}

impl<T, B> Poller<T, B>
where
    T: Send + Sync + 'static,
    B: FnMut(&TlsMaterial) -> Result<T, CertFileError> + Send + 'static,
{
    async fn run(mut self, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick completes at once; the files were just loaded.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(current) = self.current.upgrade() else {
                return;
            };
            self.poll(&current).await;
        }
    }

    /// Reads the files once and acts on what changed.
    pub(crate) async fn poll(&mut self, current: &ArcSwap<T>) -> Outcome {
        let Some(contents) = self.read().await else {
            return Outcome::Unreadable;
        };
        let digest = contents.digest();
        if digest == self.seen {
            return Outcome::Unchanged;
        }
        let outcome = match self.build(&contents) {
            Ok((material, value)) => {
                let value = Arc::new(value);
                current.store(Arc::clone(&value));
                self.tx.send_replace(value);
                log_loaded(
                    &material,
                    "certificate files changed: new connections use them",
                );
                Outcome::Reloaded
            }
            Err(err) => {
                // A certificate may be caught already replaced while its key
                // is not yet: only refuse bytes that are still there on a
                // second look.
                if self
                    .read()
                    .await
                    .is_some_and(|again| again.digest() != digest)
                {
                    return Outcome::Unsettled;
                }
                tracing::error!(error = %err, "refusing the changed certificate files; the ones loaded before stay in use");
                Outcome::Refused
            }
        };
        self.seen = digest;
        outcome
    }

    fn build(&mut self, contents: &Contents) -> Result<(TlsMaterial, T), CertFileError> {
        let material = TlsMaterial::parse(&self.files, contents)?;
        let value = (self.build)(&material)?;
        Ok((material, value))
    }

    /// The files' bytes, or `None` (reported once per distinct failure).
    async fn read(&mut self) -> Option<Contents> {
        let files = Arc::clone(&self.files);
        let read = tokio::task::spawn_blocking(move || files.read()).await;
        let failure = match read {
            Ok(Ok(contents)) => {
                self.read_failure = None;
                return Some(contents);
            }
            Ok(Err(err)) => err.to_string(),
            Err(join) => format!("reading the certificate files failed: {join}"),
        };
        if self.read_failure.as_ref() != Some(&failure) {
            tracing::error!(error = %failure, "cannot read the certificate files; the ones loaded before stay in use");
            self.read_failure = Some(failure);
        }
        None
    }
}

#[cfg(test)]
impl<T, B> Poller<T, B> {
    /// A poller whose last seen bytes are those of `files` now.
    pub(crate) fn for_test(
        files: TlsFiles,
        build: B,
        current: &Arc<ArcSwap<T>>,
    ) -> (Poller<T, B>, watch::Receiver<Arc<T>>) {
        let seen = files.read().map(|c| c.digest()).unwrap_or_default();
        let (tx, rx) = watch::channel(current.load_full());
        let poller = Poller {
            files: Arc::new(files),
            build,
            seen,
            read_failure: None,
            current: Arc::downgrade(current),
            tx,
        };
        (poller, rx)
    }
}

fn log_loaded(material: &TlsMaterial, message: &str) {
    match material.leaf() {
        Some(leaf) if leaf.is_expired_at(unix_now()) => tracing::warn!(
            files = %material.files(),
            subject = %leaf.subject,
            serial = %leaf.serial,
            not_after = leaf.not_after,
            "{message}, but the certificate has expired: peers will refuse it"
        ),
        Some(leaf) => tracing::info!(
            files = %material.files(),
            subject = %leaf.subject,
            serial = %leaf.serial,
            not_after = leaf.not_after,
            "{message}"
        ),
        None => tracing::info!(files = %material.files(), "{message}"),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
