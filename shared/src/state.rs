//! `ConfigState`: every valid object currently stored, as one gateway sees
//! it. Maintained by [`crate::watch`], turned into a serving snapshot by the
//! gateway.

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::OrdMap;

use serde_json::Value;

use crate::etcd_layout::KeyLayout;
use crate::keyring::Keyring;
use crate::resource::Kind;
use crate::store::RawEntry;
use crate::validate::{self, Valid, ValidRoute, ValidSsl, ValidUpstream};

/// A validated object with the etcd revision it was read at.
#[derive(Debug)]
pub struct Stored<T> {
    pub mod_revision: i64,
    /// The value exactly as etcd stores it: what the last-known-good cache
    /// writes, and what tells an unchanged object from one that a restored
    /// etcd holds at the same `mod_revision` with other content.
    pub raw: Arc<[u8]>,
    pub value: Arc<T>,
}

impl<T> Clone for Stored<T> {
    fn clone(&self) -> Self {
        Stored {
            mod_revision: self.mod_revision,
            raw: Arc::clone(&self.raw),
            value: Arc::clone(&self.value),
        }
    }
}

/// Two stored objects are equal when they are the same version of the same
/// object: one validation, one revision. This is what tells a consumer
/// (and [`imbl::OrdMap::diff`]) which objects changed between two states.
impl<T> PartialEq for Stored<T> {
    fn eq(&self, other: &Self) -> bool {
        self.mod_revision == other.mod_revision && Arc::ptr_eq(&self.value, &other.value)
    }
}

impl<T> Stored<T> {
    /// Whether `raw` is this very object: same revision and same bytes.
    fn is(&self, raw: &RawEntry) -> bool {
        self.mod_revision == raw.mod_revision && *self.raw == *raw.value
    }
}

/// The set of valid objects at one etcd revision.
///
/// Unchanged objects keep their `Arc` across updates and relists, so
/// consumers can reuse whatever they built from them (`Arc::ptr_eq`). The
/// maps are persistent: cloning a state (once per published change) is
/// O(1) however many objects it holds, and `OrdMap::diff` between two
/// states skips what they share.
#[derive(Clone, Debug, Default)]
pub struct ConfigState {
    /// The etcd revision this state reflects.
    pub revision: i64,
    pub ssls: OrdMap<String, Stored<ValidSsl>>,
    pub routes: OrdMap<String, Stored<ValidRoute>>,
    pub upstreams: OrdMap<String, Stored<ValidUpstream>>,
    /// Objects found in etcd but refused, by key, with the reason.
    pub invalid: BTreeMap<String, String>,
}

impl ConfigState {
    /// Builds the state from a full listing, reusing the validated objects of
    /// `previous` whose `mod_revision` and stored bytes did not change (after
    /// a restore from a snapshot, a revision number alone proves nothing). Sealed private keys
    /// are opened with `keyring` before validation.
    pub fn from_listing(
        layout: &KeyLayout,
        keyring: &Keyring,
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
                Some((kind, id, valid)) => state.insert(kind, id, raw, valid),
                None => state.put(layout, keyring, raw),
            }
        }
        state
    }

    /// Applies a put event: validates the value and replaces the object, or
    /// records why it was refused (removing any previous valid version, as the
    /// stored truth is now this invalid value). A private key that `keyring`
    /// cannot open makes the object invalid.
    pub fn put(&mut self, layout: &KeyLayout, keyring: &Keyring, raw: &RawEntry) {
        let Some((kind, id)) = layout.parse(&raw.key) else {
            return;
        };
        self.remove(kind, id);
        match parse_and_validate(kind, id, &raw.value, keyring) {
            Ok(valid) => self.insert(kind, id.to_owned(), raw, valid),
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

    /// Every valid object as etcd stores it, ordered by key: what the
    /// last-known-good cache holds.
    pub fn entries(&self, layout: &KeyLayout) -> Vec<RawEntry> {
        fn entries_of<'a, T: 'a>(
            layout: &'a KeyLayout,
            kind: Kind,
            objects: &'a OrdMap<String, Stored<T>>,
        ) -> impl Iterator<Item = RawEntry> + 'a {
            objects.iter().map(move |(id, stored)| RawEntry {
                key: layout.object(kind, id),
                value: stored.raw.to_vec(),
                mod_revision: stored.mod_revision,
            })
        }
        let mut entries: Vec<RawEntry> = entries_of(layout, Kind::Ssls, &self.ssls)
            .chain(entries_of(layout, Kind::Routes, &self.routes))
            .chain(entries_of(layout, Kind::Upstreams, &self.upstreams))
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        entries
    }

    pub(crate) fn insert(&mut self, kind: Kind, id: String, raw: &RawEntry, valid: Valid) {
        let (mod_revision, raw) = (raw.mod_revision, Arc::from(raw.value.as_slice()));
        match valid {
            Valid::Ssl(value) => {
                debug_assert_eq!(kind, Kind::Ssls);
                self.ssls.insert(
                    id,
                    Stored {
                        mod_revision,
                        raw,
                        value,
                    },
                );
            }
            Valid::Route(value) => {
                self.routes.insert(
                    id,
                    Stored {
                        mod_revision,
                        raw,
                        value,
                    },
                );
            }
            Valid::Upstream(value) => {
                self.upstreams.insert(
                    id,
                    Stored {
                        mod_revision,
                        raw,
                        value,
                    },
                );
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
        let valid = match kind {
            Kind::Ssls => self
                .ssls
                .get(id)
                .filter(|s| s.is(raw))
                .map(|s| Valid::Ssl(Arc::clone(&s.value))),
            Kind::Routes => self
                .routes
                .get(id)
                .filter(|s| s.is(raw))
                .map(|s| Valid::Route(Arc::clone(&s.value))),
            Kind::Upstreams => self
                .upstreams
                .get(id)
                .filter(|s| s.is(raw))
                .map(|s| Valid::Upstream(Arc::clone(&s.value))),
        }?;
        Some((kind, id.to_owned(), valid))
    }
}

fn parse_and_validate(
    kind: Kind,
    id: &str,
    bytes: &[u8],
    keyring: &Keyring,
) -> Result<Valid, String> {
    let mut value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    keyring
        .open_object(kind, &mut value)
        .map_err(|e| e.to_string())?;
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
        let state = ConfigState::from_listing(&layout, &Keyring::default(), 4, &kvs, None);
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
            &Keyring::default(),
            3,
            &[
                raw("/p/upstreams/1", UPSTREAM, 2),
                raw("/p/upstreams/9", UPSTREAM, 3),
            ],
            None,
        );
        let second = ConfigState::from_listing(
            &layout,
            &Keyring::default(),
            5,
            &[raw("/p/upstreams/1", UPSTREAM, 2)],
            Some(&first),
        );
        assert!(Arc::ptr_eq(
            &first.upstreams["1"].value,
            &second.upstreams["1"].value
        ));
        assert!(!second.contains(Kind::Upstreams, "9"));
    }

    #[test]
    fn same_revision_with_other_bytes_is_not_reused() {
        // After a restore from a snapshot, a key may hold other content at a
        // mod_revision the gateway has already seen.
        let layout = KeyLayout::new("/p");
        let first = ConfigState::from_listing(
            &layout,
            &Keyring::default(),
            9,
            &[raw("/p/upstreams/1", UPSTREAM, 2)],
            None,
        );
        let restored = r#"{"nodes":{"127.0.0.2:80":1},"type":"roundrobin"}"#;
        let second = ConfigState::from_listing(
            &layout,
            &Keyring::default(),
            3,
            &[raw("/p/upstreams/1", restored, 2)],
            Some(&first),
        );
        assert!(!Arc::ptr_eq(
            &first.upstreams["1"].value,
            &second.upstreams["1"].value
        ));
        assert_eq!(&*second.upstreams["1"].raw, restored.as_bytes());
    }

    #[test]
    fn entries_round_trip_through_a_listing() {
        let layout = KeyLayout::new("/p");
        let kvs = [
            raw("/p/upstreams/2", UPSTREAM, 5),
            raw("/p/upstreams/1", UPSTREAM, 4),
            raw("/p/upstreams/3", "not json", 6),
        ];
        let state = ConfigState::from_listing(&layout, &Keyring::default(), 6, &kvs, None);
        let entries = state.entries(&layout);
        let keys: Vec<_> = entries
            .iter()
            .map(|e| (e.key.as_str(), e.mod_revision))
            .collect();
        assert_eq!(
            keys,
            [("/p/upstreams/1", 4), ("/p/upstreams/2", 5)],
            "invalid objects are not cached"
        );
        let again =
            ConfigState::from_listing(&layout, &Keyring::default(), 6, &entries, Some(&state));
        assert!(Arc::ptr_eq(
            &state.upstreams["2"].value,
            &again.upstreams["2"].value
        ));
    }

    #[test]
    fn a_bad_update_replaces_the_good_version() {
        let layout = KeyLayout::new("/p");
        let mut state = ConfigState::from_listing(
            &layout,
            &Keyring::default(),
            2,
            &[raw("/p/upstreams/1", UPSTREAM, 2)],
            None,
        );
        state.put(
            &layout,
            &Keyring::default(),
            &raw("/p/upstreams/1", r#"{"nodes":"x"}"#, 3),
        );
        assert!(!state.contains(Kind::Upstreams, "1"));
        state.delete(&layout, "/p/upstreams/1");
        assert!(state.invalid.is_empty());
    }

    #[test]
    fn sealed_keys_are_opened_and_a_wrong_keyring_refuses_only_those_objects() {
        use base64::Engine as _;
        use rcgen::PKCS_ECDSA_P256_SHA256;

        use crate::x509::test_pki::TestCa;

        let keyring = |byte: u8| {
            let key = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
            Keyring::from_base64(&[key]).expect("valid key")
        };
        let ca = TestCa::new("CA", &PKCS_ECDSA_P256_SHA256);
        let leaf = ca.leaf("a.test", &["a.test"], Vec::new(), &PKCS_ECDSA_P256_SHA256);
        let mut ssl = serde_json::json!({"sni": "a.test", "cert": leaf.cert, "key": leaf.key});
        keyring(1)
            .seal_object(Kind::Ssls, &mut ssl)
            .expect("sealed");
        let layout = KeyLayout::new("/p");
        let kvs = [
            raw("/p/ssls/1", &ssl.to_string(), 2),
            raw("/p/upstreams/1", UPSTREAM, 3),
        ];

        let right = ConfigState::from_listing(&layout, &keyring(1), 3, &kvs, None);
        assert!(right.contains(Kind::Ssls, "1"), "{:?}", right.invalid);

        let wrong = ConfigState::from_listing(&layout, &keyring(2), 3, &kvs, None);
        assert!(!wrong.contains(Kind::Ssls, "1"));
        assert!(
            wrong.contains(Kind::Upstreams, "1"),
            "the others still load"
        );
        let reason = &wrong.invalid["/p/ssls/1"];
        assert!(
            reason.starts_with("cannot decrypt private key `key`"),
            "{reason}"
        );
    }
}
