//! Waiting on a condition instead of sleeping blindly.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

/// How often a condition is re-evaluated.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `cond` every 20 ms until it returns true or `timeout` passes;
/// on timeout the error names `what` was awaited.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F) -> crate::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
