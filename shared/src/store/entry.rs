//! What the store reads and writes: objects, raw key/values, listings.

use etcd_client::KeyValue;
use serde_json::Value;

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
