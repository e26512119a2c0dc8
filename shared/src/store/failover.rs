//! Failing over between etcd members.
//!
//! etcd-client balances calls over every configured endpoint, but keeps a
//! member that is down in rotation: a call routed to it fails at once
//! (connection refused; or, in Docker or Kubernetes, a name that no longer
//! resolves) although the other members would answer it. One member of three
//! down made about a third of admin writes answer 503, and sent a data
//! plane's watch into backoff. Such a call never reached etcd, so sending it
//! again is safe, writes included; the balancer then picks again, and soon a
//! live member. A call that reached etcd and failed is never repeated here:
//! it may have been applied.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use super::cause;

/// How long a call refused by every member it tried keeps being retried:
/// long enough to find a live member among a few dead ones, short enough
/// that an etcd cluster that is entirely down is reported at once.
const RETRY_WINDOW: Duration = Duration::from_millis(500);
/// Between two attempts, so that a refused reconnect is not a busy loop.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Runs `call` until it reaches an etcd member (whatever the member
/// answers), or until it was refused for [`RETRY_WINDOW`]; returns the last
/// outcome.
pub(super) async fn until_sent<T, F, Fut>(mut call: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let give_up = Instant::now() + RETRY_WINDOW;
    loop {
        match call().await {
            Err(err) if never_sent(&err) && Instant::now() < give_up => {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            outcome => return outcome,
        }
    }
}

/// The message of the connector's (hyper-util's, whose error type is not
/// exported) failure to resolve an endpoint's name.
const DNS_FAILURE: &str = "dns error";

/// Whether `err` failed before a connection existed (refused, unreachable,
/// unresolvable): the request was never sent.
pub(super) fn never_sent(err: &etcd_client::Error) -> bool {
    let mut cause: Option<&(dyn StdError + 'static)> = cause::inner(err);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<io::Error>() {
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::AddrNotAvailable
            ) {
                return true;
            }
        }
        if current.to_string() == DNS_FAILURE {
            return true;
        }
        cause = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback port that refuses connections: bound, then released.
    fn refused_endpoint() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}")
    }

    async fn refused_call() -> etcd_client::Error {
        let mut client = etcd_client::Client::connect([refused_endpoint()], None)
            .await
            .unwrap();
        client.get("/x", None).await.unwrap_err()
    }

    #[tokio::test]
    async fn a_refused_connection_is_recognised_as_never_sent() {
        let err = refused_call().await;
        assert!(never_sent(&err), "not recognised: {err:?}");
    }

    #[tokio::test]
    async fn an_endpoint_whose_name_does_not_resolve_is_recognised_as_never_sent() {
        // RFC 6761: `.invalid` never resolves.
        let endpoint = "http://etcd-member.invalid:2379";
        let mut client = etcd_client::Client::connect([endpoint], None)
            .await
            .unwrap();
        let err = client.get("/x", None).await.unwrap_err();
        assert!(never_sent(&err), "not recognised: {err:?}");
    }

    #[tokio::test]
    async fn a_connection_closed_after_it_was_accepted_is_not_retried() {
        // Accepts, then hangs up: the request may have reached a server.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                drop(stream);
            }
        });
        let mut client = etcd_client::Client::connect([endpoint], None)
            .await
            .unwrap();
        let err = client.get("/x", None).await.unwrap_err();
        assert!(
            !never_sent(&err),
            "mistaken for a refused connection: {err:?}"
        );
    }

    #[tokio::test]
    async fn calls_refused_by_every_member_give_up_after_the_retry_window() {
        let endpoint = refused_endpoint();
        let client = etcd_client::Client::connect([endpoint], None)
            .await
            .unwrap();
        let started = Instant::now();
        let mut attempts = 0;
        let outcome = until_sent(|| {
            attempts += 1;
            let mut client = client.clone();
            async move { client.get("/x", None).await }
        })
        .await;
        let took = started.elapsed();
        assert!(outcome.is_err());
        assert!(attempts > 1, "a refused call is retried");
        assert!(
            took >= RETRY_WINDOW && took < RETRY_WINDOW + Duration::from_secs(1),
            "gave up after {took:?}"
        );
    }
}
