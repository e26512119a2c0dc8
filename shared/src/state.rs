//! `ConfigState`: every valid object currently stored, as one gateway sees
//! it. Maintained by [`crate::watch`], turned into a serving snapshot by the
//! gateway.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::keys::KeyLayout;
use crate::resource::Kind;
use crate::store::RawEntry;
use crate::validate::{self, Valid, ValidRoute, ValidSsl, ValidUpstream};

/// A validated object with the etcd revision it was read at.
#[derive(Debug)]
pub struct Stored<T> {
    pub mod_revision: i64,
    pub value: Arc<T>,
}

impl<T> Clone for Stored<T> {
    fn clone(&self) -> Self {
        Stored {
            mod_revision: self.mod_revision,
            value: Arc::clone(&self.value),
        }
    }
}

/// The set of valid objects at one etcd revision.
///
/// Unchanged objects keep their `Arc` across updates and relists, so
/// consumers can reuse whatever they built from them (`Arc::ptr_eq`).
#[derive(Clone, Debug, Default)]
pub struct ConfigState {
    /// The etcd revision this state reflects.
    pub revision: i64,
    pub ssls: BTreeMap<String, Stored<ValidSsl>>,
    pub routes: BTreeMap<String, Stored<ValidRoute>>,
    pub upstreams: BTreeMap<String, Stored<ValidUpstream>>,
    /// Objects found in etcd but refused, by key, with the reason.
    pub invalid: BTreeMap<String, String>,
}

impl ConfigState {
    /// Builds the state from a full listing, reusing the validated objects of
    /// `previous` whose `mod_revision` did not change.
    pub fn from_listing(
        layout: &KeyLayout,
        revision: i64,
        kvs: &[RawEntry],
        previous: Option<&ConfigState>,
    ) -> ConfigState {
        let mut state = ConfigState {
            revision,
            ..ConfigState::default()
        };
        for raw in kvs {
            match previous.and_then(|p| p.reusable(layout, raw)) {
                Some((kind, id, valid)) => state.insert(kind, id, raw.mod_revision, valid),
                None => state.put(layout, raw),
            }
        }
        state
    }

    /// Applies a put event: validates the value and replaces the object, or
    /// records why it was refused (removing any previous valid version, as the
    /// stored truth is now this invalid value).
    pub fn put(&mut self, layout: &KeyLayout, raw: &RawEntry) {
        let Some((kind, id)) = layout.parse(&raw.key) else {
            return;
        };
        self.remove(kind, id);
        match parse_and_validate(kind, id, &raw.value) {
            Ok(valid) => self.insert(kind, id.to_owned(), raw.mod_revision, valid),
            Err(reason) => {
                tracing::warn!(key = %raw.key, %reason, "skipping invalid object found in etcd");
                self.invalid.insert(raw.key.clone(), reason);
            }
        }
    }

    /// Applies a delete event.
    pub fn delete(&mut self, layout: &KeyLayout, key: &str) {
        if let Some((kind, id)) = layout.parse(key) {
            self.remove(kind, id);
            self.invalid.remove(key);
        }
    }

    /// Whether `kind`/`id` is present and valid.
    pub fn contains(&self, kind: Kind, id: &str) -> bool {
        match kind {
            Kind::Ssls => self.ssls.contains_key(id),
            Kind::Routes => self.routes.contains_key(id),
            Kind::Upstreams => self.upstreams.contains_key(id),
        }
    }

    fn insert(&mut self, kind: Kind, id: String, mod_revision: i64, valid: Valid) {
        match valid {
            Valid::Ssl(value) => {
                debug_assert_eq!(kind, Kind::Ssls);
                self.ssls.insert(id, Stored { mod_revision, value });
            }
            Valid::Route(value) => {
                self.routes.insert(id, Stored { mod_revision, value });
            }
            Valid::Upstream(value) => {
                self.upstreams.insert(id, Stored { mod_revision, value });
            }
        }
    }

    fn remove(&mut self, kind: Kind, id: &str) {
        match kind {
            Kind::Ssls => drop(self.ssls.remove(id)),
            Kind::Routes => drop(self.routes.remove(id)),
            Kind::Upstreams => drop(self.upstreams.remove(id)),
        }
    }

    /// The already validated object for `raw`, if `raw` is unchanged.
    fn reusable(&self, layout: &KeyLayout, raw: &RawEntry) -> Option<(Kind, String, Valid)> {
        let (kind, id) = layout.parse(&raw.key)?;
        let same = |rev: i64| rev == raw.mod_revision;
        let valid = match kind {
            Kind::Ssls => self
                .ssls
                .get(id)
                .filter(|s| same(s.mod_revision))
                .map(|s| Valid::Ssl(Arc::clone(&s.value))),
            Kind::Routes => self
                .routes
                .get(id)
                .filter(|s| same(s.mod_revision))
                .map(|s| Valid::Route(Arc::clone(&s.value))),
            Kind::Upstreams => self
                .upstreams
                .get(id)
                .filter(|s| same(s.mod_revision))
                .map(|s| Valid::Upstream(Arc::clone(&s.value))),
        }?;
        Some((kind, id.to_owned(), valid))
    }
}

fn parse_and_validate(kind: Kind, id: &str, bytes: &[u8]) -> Result<Valid, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    validate::validate(kind, id, &value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(key: &str, value: &str, rev: i64) -> RawEntry {
        RawEntry {
            key: key.to_owned(),
            value: value.as_bytes().to_vec(),
            mod_revision: rev,
        }
    }

    const UPSTREAM: &str = r#"{"nodes":{"127.0.0.1:80":1},"type":"roundrobin"}"#;

    #[test]
    fn invalid_objects_are_recorded_not_loaded() {
        let layout = KeyLayout::new("/p");
        let kvs = [
            raw("/p/upstreams/1", UPSTREAM, 2),
            raw("/p/upstreams/2", "not json", 3),
            raw("/p/unknown/1", "{}", 4),
        ];
        let state = ConfigState::from_listing(&layout, 4, &kvs, None);
        assert!(state.contains(Kind::Upstreams, "1"));
        assert!(!state.contains(Kind::Upstreams, "2"));
        assert!(state.invalid["/p/upstreams/2"].contains("not JSON"));
        assert_eq!(state.invalid.len(), 1);
    }

    #[test]
    fn relist_reuses_unchanged_objects_and_drops_missing_ones() {
        let layout = KeyLayout::new("/p");
        let first = ConfigState::from_listing(
            &layout,
            3,
            &[raw("/p/upstreams/1", UPSTREAM, 2), raw("/p/upstreams/9", UPSTREAM, 3)],
            None,
        );
        let second = ConfigState::from_listing(&layout, 5, &[raw("/p/upstreams/1", UPSTREAM, 2)], Some(&first));
        assert!(Arc::ptr_eq(&first.upstreams["1"].value, &second.upstreams["1"].value));
        assert!(!second.contains(Kind::Upstreams, "9"));
    }

    #[test]
    fn a_bad_update_replaces_the_good_version() {
        let layout = KeyLayout::new("/p");
        let mut state = ConfigState::from_listing(&layout, 2, &[raw("/p/upstreams/1", UPSTREAM, 2)], None);
        state.put(&layout, &raw("/p/upstreams/1", r#"{"nodes":"x"}"#, 3));
        assert!(!state.contains(Kind::Upstreams, "1"));
        state.delete(&layout, "/p/upstreams/1");
        assert!(state.invalid.is_empty());
    }
}
