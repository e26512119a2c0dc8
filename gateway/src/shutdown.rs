//! The signal that starts a graceful shutdown, shared by the listeners, the
//! status server and every open connection.

use tokio::sync::watch;

/// Resolves when shutdown begins.
#[derive(Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    /// A signal and the trigger that fires it.
    pub fn new() -> (watch::Sender<bool>, ShutdownSignal) {
        let (tx, rx) = watch::channel(false);
        (tx, ShutdownSignal(rx))
    }

    pub async fn fired(mut self) {
        // An error means the trigger is gone, which also means shutdown.
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}
