//! The SNI table: which SSL object serves which server name.
//!
//! Lookups are hash lookups, whatever the number of SSL objects: an exact
//! name first, then the one-label wildcard covering it (`a.example.com` ->
//! `*.example.com`), then `*`.

use std::collections::hash_map::Entry as Slot;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use shared::resource::SslType;
use shared::validate::{normalize_host, HostPattern, ValidSsl};

use super::entry::Entry;
use super::RouteCertRequests;

/// Per-SSL-object TLS state for every SNI, built once per configuration
/// change.
///
/// When two SSL objects claim the same SNI pattern, the one with the smallest
/// id (in byte order) serves it and a warning names both.
#[derive(Default)]
pub struct SniTable {
    exact: HashMap<String, Arc<Entry>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Arc<Entry>>,
    any: Option<Arc<Entry>>,
    /// Serves clients that send no SNI.
    fallback: Option<Arc<Entry>>,
    /// Every built entry by SSL object id, for the next build to reuse.
    by_id: HashMap<String, Arc<Entry>>,
}

impl SniTable {
    /// Builds the table from the SSL objects of the current configuration.
    ///
    /// `previous` is the table being replaced: an object that is still the
    /// same `Arc<ValidSsl>` keeps its built entry (configuration, session
    /// cache), so changing one object does not rebuild the others. Objects
    /// with `status: 0` or `type: client` are skipped; so is, with a warning,
    /// an object that cannot be turned into a TLS configuration.
    /// `fallback_sni` names the SSL object (by SNI rules) serving clients that
    /// send no SNI.
    pub fn build(
        ssls: &[Arc<ValidSsl>],
        fallback_sni: Option<&str>,
        previous: Option<&SniTable>,
    ) -> SniTable {
        SniTable::build_for_routes(ssls, fallback_sni, previous, &RouteCertRequests::default())
    }

    /// [`SniTable::build`], where the handshakes of the SSL objects through
    /// which a route in `requests` can be reached also ask for a client
    /// certificate (optional, listing the route's CAs) unless the object's
    /// own `client` section already makes one mandatory.
    pub fn build_for_routes(
        ssls: &[Arc<ValidSsl>],
        fallback_sni: Option<&str>,
        previous: Option<&SniTable>,
        requests: &RouteCertRequests,
    ) -> SniTable {
        let mut servers: Vec<&Arc<ValidSsl>> = ssls
            .iter()
            .filter(|ssl| ssl.enabled && ssl.kind == SslType::Server)
            .collect();
        servers.sort_by(|a, b| a.id.cmp(&b.id));
        let mut table = SniTable::default();
        for ssl in servers {
            if table.by_id.contains_key(&ssl.id) {
                tracing::warn!(ssl_id = %ssl.id, "SSL object listed twice; using the first");
                continue;
            }
            let route_names = requests.names_for(&ssl.snis);
            if let Some(entry) = reuse_or_build(ssl, route_names.as_deref(), previous) {
                table.insert(entry);
            }
        }
        table.fallback = fallback_sni.and_then(|name| table.fallback_entry(name));
        table
    }

    /// The SSL object id serving `host` (already normalised), by SNI rules.
    pub fn ssl_id_for(&self, host: &str) -> Option<&str> {
        self.lookup(host).map(|entry| &*entry.id)
    }

    /// How many SSL objects serve handshakes.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The entry for a ClientHello's normalised SNI; `None` SNI means the
    /// fallback.
    pub(crate) fn for_sni(&self, sni: Option<&str>) -> Option<&Arc<Entry>> {
        match sni {
            Some(name) => self.lookup(name),
            None => self.fallback.as_ref(),
        }
    }

    fn lookup(&self, name: &str) -> Option<&Arc<Entry>> {
        self.exact
            .get(name)
            .or_else(|| wildcard_suffix(name).and_then(|suffix| self.wildcard.get(suffix)))
            .or(self.any.as_ref())
    }

    fn insert(&mut self, entry: Arc<Entry>) {
        for pattern in &entry.ssl.snis {
            let slot = match pattern {
                HostPattern::Exact(name) => self.exact.entry(name.clone()),
                HostPattern::Wildcard(suffix) => self.wildcard.entry(suffix.clone()),
                HostPattern::Any => {
                    claim_any(&mut self.any, &entry);
                    continue;
                }
            };
            claim(slot, &entry, pattern);
        }
        self.by_id.insert(entry.ssl.id.clone(), entry);
    }

    fn fallback_entry(&self, name: &str) -> Option<Arc<Entry>> {
        let entry = self.lookup(&normalize_host(name)).cloned();
        if entry.is_none() {
            tracing::warn!(
                fallback_sni = name,
                "no SSL object serves fallback_sni; clients without SNI will be refused"
            );
        }
        entry
    }
}

fn reuse_or_build(
    ssl: &Arc<ValidSsl>,
    route_names: Option<&[Vec<u8>]>,
    previous: Option<&SniTable>,
) -> Option<Arc<Entry>> {
    let unchanged = previous
        .and_then(|table| table.by_id.get(&ssl.id))
        .filter(|entry| {
            Arc::ptr_eq(&entry.ssl, ssl) && entry.route_names.as_deref() == route_names
        });
    if let Some(entry) = unchanged {
        return Some(Arc::clone(entry));
    }
    match Entry::build(ssl, route_names) {
        Ok(entry) => {
            // Once per change of the object, not per connection.
            for warning in &ssl.warnings {
                tracing::warn!(ssl_id = %ssl.id, %warning, "SSL object loaded with a warning");
            }
            Some(Arc::new(entry))
        }
        Err(error) => {
            tracing::warn!(ssl_id = %ssl.id, %error, "SSL object skipped");
            None
        }
    }
}

/// Entries arrive in id order, so the one already holding a name keeps it.
fn claim(slot: Slot<'_, String, Arc<Entry>>, entry: &Arc<Entry>, pattern: &HostPattern) {
    match slot {
        Slot::Vacant(vacant) => {
            vacant.insert(Arc::clone(entry));
        }
        Slot::Occupied(held) => warn_duplicate(pattern, &held.get().id, &entry.id),
    }
}

fn claim_any(any: &mut Option<Arc<Entry>>, entry: &Arc<Entry>) {
    match any {
        None => *any = Some(Arc::clone(entry)),
        Some(held) => warn_duplicate(&HostPattern::Any, &held.id, &entry.id),
    }
}

fn warn_duplicate(pattern: &HostPattern, kept: &str, ignored: &str) {
    tracing::warn!(
        sni = ?pattern,
        kept_ssl_id = kept,
        ignored_ssl_id = ignored,
        "two SSL objects claim the same SNI; the smallest id serves it"
    );
}

/// The suffix a one-label wildcard must name to cover `name`:
/// `a.example.com` -> `example.com`.
fn wildcard_suffix(name: &str) -> Option<&str> {
    let (label, suffix) = name.split_once('.')?;
    (!label.is_empty() && !suffix.is_empty()).then_some(suffix)
}

impl fmt::Debug for SniTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniTable")
            .field("ssl_objects", &self.by_id.len())
            .field("exact", &self.exact.len())
            .field("wildcard", &self.wildcard.len())
            .field("any", &self.any.as_ref().map(|entry| &entry.id))
            .field("fallback", &self.fallback.as_ref().map(|entry| &entry.id))
            .finish()
    }
}
