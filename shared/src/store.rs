//! The etcd store: JSON objects at `<prefix>/<kind>/<id>`.
//!
//! Only the admin API writes, through a [`Store`]; a data plane gets a
//! [`StoreReader`], which can list, watch and probe but not write. Every
//! call is bounded by the configured request timeout, so an unreachable
//! etcd surfaces as [`StoreError::Unavailable`] (HTTP 503 on the admin API)
//! instead of a hang; within it, a call that fails during a leader election
//! is tried again (`retry`).
//!
//! With `deployment.etcd.tls` the client speaks TLS (and presents a client
//! certificate to an etcd running `--client-cert-auth`); when those files
//! are rotated, a new client replaces the old one and new calls use it
//! (`rotate`). [`StoreReader::probe`] tells a refused TLS handshake from an
//! etcd that is merely down (`probe`, `handshake`).
//!
//! The submodules import only downward: `cause` at the bottom; `probe`,
//! `tls`, `failover` above it; `handshake` (`probe`, `tls`), `retry`
//! (`failover`), `rotate` (`handshake`, `tls`); `reader` over all of them;
//! this module (the writer) on top.

mod cause;
mod entry;
mod error;
mod failover;
mod handshake;
mod probe;
mod reader;
mod retry;
mod rotate;
mod tls;

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp};
use serde_json::Value;

use crate::config::EtcdConfig;
use crate::etcd_layout::KeyLayout;
use crate::resource::Kind;

pub use entry::{Entry, Listing, PutOutcome, RawEntry};
pub use error::{ConnectError, StoreError};
pub use probe::ProbeError;
pub use reader::StoreReader;

/// A cheap-to-clone handle on etcd that reads and writes: the admin API's.
#[derive(Clone)]
pub struct Store {
    reader: StoreReader,
}

impl Store {
    /// Prepares a client for the configured endpoints; see
    /// [`StoreReader::connect`].
    pub async fn connect(config: &EtcdConfig) -> Result<Store, ConnectError> {
        let reader = StoreReader::connect(config).await?;
        Ok(Store { reader })
    }

    /// The read side alone, for a data plane sharing this client.
    pub fn reader(&self) -> &StoreReader {
        &self.reader
    }

    pub fn layout(&self) -> &KeyLayout {
        self.reader.layout()
    }

    pub async fn get(&self, kind: Kind, id: &str) -> Result<Option<Entry>, StoreError> {
        let key = self.layout().object(kind, id);
        let resp = self
            .reader
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
            .reader
            .bounded(|mut client| {
                let options = options.clone();
                async move { client.get(self.layout().dir(kind), Some(options)).await }
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
        let (key, value) = (self.layout().object(kind, id), value.to_string());
        let options = PutOptions::new().with_prev_key();
        let resp = self
            .reader
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
        let key = self.layout().object(kind, id);
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
        let key = self.layout().object(kind, id);
        let unchanged = Compare::mod_revision(key.clone(), CompareOp::Equal, expected);
        self.put_when(unchanged, key, value).await
    }

    /// Deletes; `false` when there was nothing to delete. (After an attempt
    /// that may have deleted it, nothing left counts as deleted.)
    pub async fn delete(&self, kind: Kind, id: &str) -> Result<bool, StoreError> {
        let key = self.layout().object(kind, id);
        let (resp, retried) = self
            .reader
            .bounded_attempts(|mut client| {
                let key = key.clone();
                async move { client.delete(key, None).await }
            })
            .await?;
        Ok(resp.deleted() > 0 || retried)
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
            .reader
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
        let id = match self.layout().parse(&raw.key) {
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
}
