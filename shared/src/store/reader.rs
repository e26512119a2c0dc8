//! The read side of etcd: list, watch, probe. A data plane holds only a
//! [`StoreReader`], so it cannot write to etcd; the admin API's
//! [`Store`](super::Store) writes through one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use etcd_client::{Client, ConnectOptions, GetOptions, WatchOptions, WatchStream};

use super::cause::describe;
use super::entry::{Listing, RawEntry};
use super::error::{ConnectError, StoreError};
use super::probe::{self, ProbeError};
use super::tls::{self, EtcdTlsVersion};
use super::{failover, handshake, retry, rotate};
use crate::certfile::Reloading;
use crate::config::EtcdConfig;
use crate::etcd_layout::KeyLayout;

/// A cheap-to-clone, read-only handle on etcd.
#[derive(Clone)]
pub struct StoreReader {
    /// Replaced when the TLS files are rotated; each call uses the newest.
    client: Arc<ArcSwap<Client>>,
    layout: KeyLayout,
    endpoints: String,
    urls: Arc<[String]>,
    timeout: Duration,
    /// Follows the TLS files for as long as any clone of the handle lives.
    tls: Option<Reloading<EtcdTlsVersion>>,
}

impl StoreReader {
    /// Prepares a client for the configured endpoints; etcd-client balances
    /// over (and fails over between) them. The connection itself is made
    /// lazily, so this succeeds while etcd is down; see [`StoreReader::probe`].
    pub async fn connect(config: &EtcdConfig) -> Result<StoreReader, ConnectError> {
        let timeout = config.request_timeout();
        let endpoints = config.endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(5), timeout)
            .with_keep_alive_while_idle(true);
        let tls = config
            .tls
            .as_ref()
            .map(|tls| tls::follow(tls, timeout))
            .transpose()?;
        let first = match &tls {
            Some(tls) => options.clone().with_tls(tls.current().options.clone()),
            None => options.clone(),
        };
        let client = Client::connect(&config.endpoints, Some(first))
            .await
            .map_err(|e| StoreError::Unavailable {
                endpoints: endpoints.clone(),
                reason: describe(&e),
            })?;
        let client = Arc::new(ArcSwap::from_pointee(client));
        if let Some(tls) = &tls {
            tokio::spawn(rotate::rotate(
                config.endpoints.clone(),
                options,
                tls.subscribe(),
                Arc::downgrade(&client),
                timeout,
            ));
        }
        Ok(StoreReader {
            client,
            layout: KeyLayout::new(&config.prefix),
            endpoints,
            urls: config.endpoints.clone().into(),
            timeout,
            tls,
        })
    }

    /// One bounded read, to find out at startup whether etcd accepts us.
    /// [`ProbeError::is_fatal`] tells a refused TLS handshake or refused
    /// credentials (which retrying cannot fix) from an etcd that is down.
    pub async fn probe(&self) -> Result<(), ProbeError> {
        let options = GetOptions::new().with_keys_only().with_limit(1);
        let call = failover::until_sent(|| {
            let (mut client, options) = (self.client(), options.clone());
            async move { client.get(self.layout.root(), Some(options)).await }
        });
        let failure = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(err)) => probe::classify(&self.endpoints, &err),
            // A silent etcd is not refusing us; do not wait on it twice.
            Err(_) => {
                return Err(ProbeError::Unreachable {
                    endpoints: self.endpoints.clone(),
                    reason: format!("no answer within {:?}", self.timeout),
                })
            }
        };
        if failure.is_fatal() {
            return Err(failure);
        }
        Err(self.tls_refusal().await.unwrap_or(failure))
    }

    /// The first endpoint that refuses our TLS settings, with its reason.
    async fn tls_refusal(&self) -> Option<ProbeError> {
        let tls = self.tls.as_ref()?.current();
        handshake::first_refusal(&self.urls, &tls, self.timeout).await
    }

    /// The newest client (cheap: the client is a set of channel handles).
    fn client(&self) -> Client {
        Client::clone(&self.client.load())
    }

    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    /// The endpoints, for error messages.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// Every key under the prefix, with the revision they were read at.
    ///
    /// Read in pages of [`LOAD_PAGE`] keys, all at the revision of the first
    /// one: a single response holding 10,000 certificates would exceed what
    /// the gRPC client accepts (4 MiB by default).
    pub async fn load_all(&self) -> Result<Listing, StoreError> {
        let root = self.layout.root();
        let end = prefix_end(root.as_bytes());
        let mut from = root.into_bytes();
        let (mut kvs, mut revision) = (Vec::new(), 0);
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LOAD_PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let resp = self
                .bounded(|client| {
                    let (key, options) = (from.clone(), options.clone());
                    let mut kv = client.kv_client().max_decoding_message_size(MAX_PAGE_BYTES);
                    async move { kv.get(key, Some(options)).await }
                })
                .await?;
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            kvs.extend(resp.kvs().iter().map(RawEntry::from));
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    // The smallest key after the last one read.
                    from = [last.key(), &[0]].concat();
                }
                _ => return Ok(Listing { revision, kvs }),
            }
        }
    }

    /// Opens a watch on the whole prefix from `start_revision` (inclusive).
    pub async fn watch_from(&self, start_revision: i64) -> Result<WatchStream, StoreError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(start_revision)
            .with_progress_notify();
        self.bounded(|mut client| {
            let options = options.clone();
            async move { client.watch(self.layout.root(), Some(options)).await }
        })
        .await
    }

    /// Bounds an etcd call by the request timeout and maps its failure.
    /// `call` gets the newest client; it is sent again when it could not
    /// reach the member the client picked (see [`failover`]), and when etcd
    /// could not serve it during an election (see [`retry`]).
    pub(super) async fn bounded<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        Ok(self.bounded_attempts(call).await?.0)
    }

    /// [`StoreReader::bounded`], also saying whether an attempt failed after it
    /// may have reached etcd (and so may have been applied).
    pub(super) async fn bounded_attempts<T, F, Fut>(
        &self,
        mut call: F,
    ) -> Result<(T, bool), StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let unavailable = |reason: String| StoreError::Unavailable {
            endpoints: self.endpoints.clone(),
            reason,
        };
        let mut attempts = retry::Attempts::within(self.timeout);
        loop {
            let attempt = failover::until_sent(|| call(self.client()));
            match tokio::time::timeout(attempts.remaining(), attempt).await {
                Ok(Ok(value)) => return Ok((value, attempts.retried)),
                Ok(Err(err)) if retry::is_transient(&err) && attempts.pause().await => {
                    tracing::debug!(reason = %describe(&err), "etcd call failed during an election; trying again");
                }
                Ok(Err(err)) => return Err(unavailable(describe(&err))),
                Err(_) => return Err(unavailable(format!("no answer within {:?}", self.timeout))),
            }
        }
    }
}

/// Keys per page of [`StoreReader::load_all`].
const LOAD_PAGE: i64 = 500;
/// The largest page [`StoreReader::load_all`] accepts: 500 objects of 512 KiB.
/// (etcd refuses values over 1.5 MiB by default; real objects are a few KiB.)
const MAX_PAGE_BYTES: usize = 256 * 1024 * 1024;

/// The end of the key range holding every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes: every key from the prefix on (etcd's "\0" end).
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn the_range_end_of_a_prefix() {
        assert_eq!(prefix_end(b"/apisix"), b"/apisiy");
        assert_eq!(prefix_end(b"/a\xfe"), b"/a\xff");
        assert_eq!(prefix_end(b"/a\xff"), b"/b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
    }
}
