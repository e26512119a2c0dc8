//! The etcd store: JSON objects at `<prefix>/<kind>/<id>`.
//!
//! Only the admin API writes. Every call is bounded by the configured request
//! timeout, so an unreachable etcd surfaces as [`StoreError::Unavailable`]
//! (HTTP 503 on the admin API) instead of a hang; within it, a call that
//! fails during a leader election is tried again (`retry`).
//!
//! With `deployment.etcd.tls` the client speaks TLS (and presents a client
//! certificate to an etcd running `--client-cert-auth`); when those files
//! are rotated, a new client replaces the old one and new calls use it
//! (`tls`). [`Store::probe`] tells a refused TLS handshake from an etcd that
//! is merely down (`probe`).

mod failover;
mod probe;
mod retry;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
    WatchOptions, WatchStream,
};
use serde_json::Value;
use thiserror::Error;

use crate::certfile::{CertFileError, Reloading};
use crate::config::EtcdConfig;
use crate::etcd_layout::KeyLayout;
use crate::resource::Kind;

pub use probe::ProbeError;
use tls::EtcdTlsVersion;

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// etcd could not be reached, did not answer in time, or refused the call.
    #[error("etcd unavailable ({endpoints}): {reason}")]
    Unavailable { endpoints: String, reason: String },
    /// A stored value is not a JSON object (written by hand?).
    #[error("stored value at {key} is not a JSON object: {reason}")]
    Corrupt { key: String, reason: String },
}

/// One stored object.
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: String,
    pub key: String,
    pub value: Value,
    /// etcd `mod_revision`: the compare-and-swap token.
    pub mod_revision: i64,
}

/// What a `put` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    Replaced,
}

/// Every key under the prefix at one revision, as the watcher loads it.
#[derive(Debug)]
pub struct Listing {
    pub revision: i64,
    pub kvs: Vec<RawEntry>,
}

/// A key/value pair as etcd holds it, not yet trusted.
#[derive(Clone, Debug)]
pub struct RawEntry {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

impl From<&KeyValue> for RawEntry {
    fn from(kv: &KeyValue) -> Self {
        RawEntry {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        }
    }
}

/// Why [`Store::connect`] failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The `deployment.etcd.tls` files cannot be used.
    #[error(transparent)]
    Tls(#[from] CertFileError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A cheap-to-clone handle on etcd.
#[derive(Clone)]
pub struct Store {
    /// Replaced when the TLS files are rotated; each call uses the newest.
    client: Arc<ArcSwap<Client>>,
    layout: KeyLayout,
    endpoints: String,
    urls: Arc<[String]>,
    timeout: Duration,
    /// Follows the TLS files for as long as any clone of the store lives.
    tls: Option<Reloading<EtcdTlsVersion>>,
}

impl Store {
    /// Prepares a client for the configured endpoints; etcd-client balances
    /// over (and fails over between) them. The connection itself is made
    /// lazily, so this succeeds while etcd is down; see [`Store::probe`].
    pub async fn connect(config: &EtcdConfig) -> Result<Store, ConnectError> {
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
            tokio::spawn(tls::rotate(
                config.endpoints.clone(),
                options,
                tls.subscribe(),
                Arc::downgrade(&client),
                timeout,
            ));
        }
        Ok(Store {
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
        probe::first_refusal(&self.urls, &tls, self.timeout).await
    }

    /// The newest client (cheap: the client is a set of channel handles).
    fn client(&self) -> Client {
        Client::clone(&self.client.load())
    }

    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    pub async fn get(&self, kind: Kind, id: &str) -> Result<Option<Entry>, StoreError> {
        let key = self.layout.object(kind, id);
        let resp = self
            .bounded(|mut client| {
                let key = key.clone();
                async move { client.get(key, None).await }
            })
            .await?;
        resp.kvs()
            .first()
            .map(|kv| self.entry(kind, kv))
            .transpose()
    }

    /// Every object of `kind`, ordered by key. Values that are not JSON
    /// objects are skipped with a logged warning.
    pub async fn list(&self, kind: Kind) -> Result<Vec<Entry>, StoreError> {
        let options = GetOptions::new().with_prefix();
        let resp = self
            .bounded(|mut client| {
                let options = options.clone();
                async move { client.get(self.layout.dir(kind), Some(options)).await }
            })
            .await?;
        let entries = resp
            .kvs()
            .iter()
            .filter_map(|kv| match self.entry(kind, kv) {
                Ok(entry) => Some(entry),
                Err(err) => {
                    tracing::warn!(%err, "skipping unreadable object");
                    None
                }
            })
            .collect();
        Ok(entries)
    }

    /// Writes unconditionally; says whether the object is new.
    pub async fn put(&self, kind: Kind, id: &str, value: &Value) -> Result<PutOutcome, StoreError> {
        let (key, value) = (self.layout.object(kind, id), value.to_string());
        let options = PutOptions::new().with_prev_key();
        let resp = self
            .bounded(|mut client| {
                let (key, value, options) = (key.clone(), value.clone(), options.clone());
                async move { client.put(key, value, Some(options)).await }
            })
            .await?;
        Ok(match resp.prev_key() {
            Some(_) => PutOutcome::Replaced,
            None => PutOutcome::Created,
        })
    }

    /// Writes only if the object does not exist yet; `false` when it does.
    pub async fn create(&self, kind: Kind, id: &str, value: &Value) -> Result<bool, StoreError> {
        let key = self.layout.object(kind, id);
        // create_revision 0 <=> the key does not exist.
        let absent = Compare::create_revision(key.clone(), CompareOp::Equal, 0);
        self.put_when(absent, key, value).await
    }

    /// Writes only if the object's `mod_revision` is still `expected`;
    /// `false` when someone else changed (or deleted) it meanwhile.
    pub async fn compare_and_put(
        &self,
        kind: Kind,
        id: &str,
        value: &Value,
        expected: i64,
    ) -> Result<bool, StoreError> {
        let key = self.layout.object(kind, id);
        let unchanged = Compare::mod_revision(key.clone(), CompareOp::Equal, expected);
        self.put_when(unchanged, key, value).await
    }

    /// Deletes; `false` when there was nothing to delete. (After an attempt
    /// that may have deleted it, nothing left counts as deleted.)
    pub async fn delete(&self, kind: Kind, id: &str) -> Result<bool, StoreError> {
        let key = self.layout.object(kind, id);
        let (resp, retried) = self
            .bounded_attempts(|mut client| {
                let key = key.clone();
                async move { client.delete(key, None).await }
            })
            .await?;
        Ok(resp.deleted() > 0 || retried)
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

    /// The endpoints, for error messages.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    async fn put_when(
        &self,
        compare: Compare,
        key: String,
        value: &Value,
    ) -> Result<bool, StoreError> {
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(key, value.to_string(), None)]);
        let resp = self
            .bounded(|mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await?;
        Ok(resp.succeeded())
    }

    fn entry(&self, kind: Kind, kv: &KeyValue) -> Result<Entry, StoreError> {
        let raw = RawEntry::from(kv);
        let corrupt = |reason: String| StoreError::Corrupt {
            key: raw.key.clone(),
            reason,
        };
        let id = match self.layout.parse(&raw.key) {
            Some((k, id)) if k == kind => id.to_owned(),
            _ => return Err(corrupt("key outside the layout".into())),
        };
        let value: Value =
            serde_json::from_slice(&raw.value).map_err(|e| corrupt(e.to_string()))?;
        if !value.is_object() {
            return Err(corrupt("not an object".into()));
        }
        Ok(Entry {
            id,
            key: raw.key.clone(),
            value,
            mod_revision: raw.mod_revision,
        })
    }

    /// Bounds an etcd call by the request timeout and maps its failure.
    /// `call` gets the newest client; it is sent again when it could not
    /// reach the member the client picked (see [`failover`]), and when etcd
    /// could not serve it during an election (see [`retry`]).
    async fn bounded<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        Ok(self.bounded_attempts(call).await?.0)
    }

    /// [`Store::bounded`], also saying whether an attempt failed after it
    /// may have reached etcd (and so may have been applied).
    async fn bounded_attempts<T, F, Fut>(&self, mut call: F) -> Result<(T, bool), StoreError>
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

/// Keys per page of [`Store::load_all`].
const LOAD_PAGE: i64 = 500;
/// The largest page [`Store::load_all`] accepts: 500 objects of 512 KiB.
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

/// A one-line reason for an etcd error: the gRPC message rather than the
/// status's debug dump, and the causes behind it.
fn describe(err: &etcd_client::Error) -> String {
    let mut reason = match err {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    };
    let mut source = probe::inner(err).and_then(std::error::Error::source);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}
