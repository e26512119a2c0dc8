//! The SNI table: which SSL object serves which server name.
//!
//! Lookups are hash lookups, whatever the number of SSL objects: an exact
//! name first, then the one-label wildcard covering it (`a.example.com` ->
//! `*.example.com`), then `*`.
//!
//! The table is persistent (`imbl` maps): cloning it is O(1), and
//! [`SniTable::update`] applies changed SSL objects by touching only their
//! own names, so one change costs the same whatever the number of objects.
//! To make that possible each name keeps every object claiming it, smallest
//! id first: the first serves, and removing it hands the name to the next.

use std::fmt;
use std::sync::Arc;

use shared::resource::SslType;
use shared::validate::{normalize_host, HostPattern, ValidSsl};

use super::entry::Entry;
use super::RouteCertRequests;
use crate::context::TlsInfo;

/// Per-SSL-object TLS state for every SNI, built once per change of each
/// object. Cloning is O(1).
///
/// When two SSL objects claim the same SNI pattern, the one with the smallest
/// id (in byte order) serves it and a warning names both.
#[derive(Clone, Default)]
pub struct SniTable {
    exact: imbl::HashMap<String, Claims>,
    /// Keyed by the suffix after `*.`.
    wildcard: imbl::HashMap<String, Claims>,
    any: Option<Claims>,
    /// Serves clients that send no SNI.
    fallback: Option<Arc<Entry>>,
    /// Every serving entry by SSL object id: what the next update or build
    /// starts from.
    by_id: imbl::HashMap<String, Arc<Entry>>,
    /// The SSL objects that should serve but cannot, by id (for `/status`).
    unserved: imbl::OrdMap<String, UnservedSsl>,
}

/// Why an SSL object that should serve handshakes cannot: a valid object
/// rustls still refuses (a CA webpki cannot anchor, unusable protocols).
#[derive(Clone, Debug)]
pub struct UnservedSsl {
    /// A short fixed name of the cause (`client_ca`, `ssl_protocols`, ...).
    pub kind: &'static str,
    pub reason: Arc<str>,
}

/// The entries of the SSL objects claiming one SNI pattern, in id order.
/// Cloning is two reference counts, as persistent maps clone values when
/// they copy a node.
#[derive(Clone)]
struct Claims {
    /// The first of `all`, where a lookup reads it without one more hop.
    serving: Arc<Entry>,
    all: Arc<[Arc<Entry>]>,
}

impl SniTable {
    /// Builds the table from the SSL objects of the current configuration.
    ///
    /// `previous` is the table being replaced: an object that is still the
    /// same `Arc<ValidSsl>` keeps its built entry (configuration, session
    /// ticket key), so changing one object does not rebuild the others.
    /// Objects with `status: 0` or `type: client` are skipped; so is, with a
    /// warning, an object that cannot be turned into a TLS configuration.
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
        let mut servers: Vec<&Arc<ValidSsl>> = ssls.iter().filter(|ssl| serves(ssl)).collect();
        servers.sort_by(|a, b| a.id.cmp(&b.id));
        let mut table = SniTable::default();
        for ssl in servers {
            if table.by_id.contains_key(&ssl.id) {
                tracing::warn!(ssl_id = %ssl.id, "SSL object listed twice; using the first");
                continue;
            }
            let built = previous.and_then(|table| table.by_id.get(&ssl.id));
            if let Some(entry) = table.entry_for(&ssl.id, ssl, requests, built) {
                table.insert(entry);
            }
        }
        table.fallback = fallback_sni.and_then(|name| table.fallback_entry(name));
        table
    }

    /// This table with the SSL objects in `changed` replaced (`None`:
    /// deleted), as [`SniTable::build_for_routes`] would build it from the
    /// whole new set of objects. Costs what the changed objects cost, not
    /// what the table holds: every other object keeps its entry and its
    /// names.
    ///
    /// `requests` must be those this table was built with, unless `changed`
    /// lists every SSL object: an entry is rebuilt only when its object or
    /// the CA names asked for on its behalf changed.
    pub fn update(
        &self,
        changed: &[(String, Option<Arc<ValidSsl>>)],
        fallback_sni: Option<&str>,
        requests: &RouteCertRequests,
    ) -> SniTable {
        let mut table = self.clone();
        for (id, ssl) in changed {
            table.replace(id, ssl.as_ref(), requests);
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

    /// The SSL objects that should serve handshakes but cannot, by id.
    pub fn unserved(&self) -> impl Iterator<Item = (&str, &UnservedSsl)> {
        self.unserved.iter().map(|(id, why)| (id.as_str(), why))
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
            .map(|claims| &claims.serving)
    }

    /// Makes object `id` serve as `ssl` now describes it (`None`: deleted).
    fn replace(&mut self, id: &str, ssl: Option<&Arc<ValidSsl>>, requests: &RouteCertRequests) {
        let old = self.by_id.get(id).cloned();
        self.unserved.remove(id);
        let new = ssl
            .filter(|ssl| serves(ssl))
            .and_then(|ssl| self.entry_for(id, ssl, requests, old.as_ref()));
        if let (Some(old), Some(new)) = (&old, &new) {
            if Arc::ptr_eq(old, new) {
                return;
            }
        }
        if let Some(old) = old {
            self.release(&old);
        }
        if let Some(new) = new {
            self.insert(new);
        }
    }

    /// [`reuse_or_build`], recording why object `id` cannot serve, if so.
    fn entry_for(
        &mut self,
        id: &str,
        ssl: &Arc<ValidSsl>,
        requests: &RouteCertRequests,
        built: Option<&Arc<Entry>>,
    ) -> Option<Arc<Entry>> {
        match reuse_or_build(ssl, requests, built) {
            Ok(entry) => Some(entry),
            Err(unserved) => {
                self.unserved.insert(id.to_owned(), unserved);
                None
            }
        }
    }

    fn insert(&mut self, entry: Arc<Entry>) {
        for pattern in &entry.ssl.snis {
            self.reclaim(pattern, |claims| {
                Some(Claims::adding(claims, &entry, pattern))
            });
        }
        self.by_id.insert(entry.ssl.id.clone(), entry);
    }

    /// Gives up every name of `entry`, each to the next claimant if any.
    fn release(&mut self, entry: &Arc<Entry>) {
        for pattern in &entry.ssl.snis {
            self.reclaim(pattern, |claims| {
                claims.and_then(|claims| Claims::of(claims.without(&entry.id)))
            });
        }
        self.by_id.remove(&*entry.id);
    }

    /// Replaces the claims on `pattern` by what `change` makes of them
    /// (`None`: nobody claims it any more).
    fn reclaim(
        &mut self,
        pattern: &HostPattern,
        change: impl FnOnce(Option<&Claims>) -> Option<Claims>,
    ) {
        let (map, name) = match pattern {
            HostPattern::Exact(name) => (&mut self.exact, name),
            HostPattern::Wildcard(suffix) => (&mut self.wildcard, suffix),
            HostPattern::Any => {
                self.any = change(self.any.as_ref());
                return;
            }
        };
        match change(map.get(name)) {
            Some(claims) => map.insert(name.clone(), claims),
            None => map.remove(name),
        };
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

/// Whether the SSL object now serving the connection's SNI verifies client
/// certificates as the one its handshake was judged under did.
pub(crate) fn is_current(tls: &TlsInfo, snis: &SniTable) -> bool {
    snis.for_sni(tls.server_name.as_deref())
        .is_some_and(|entry| entry.client_policy == tls.client_policy)
}

impl Claims {
    /// `None` when nobody claims the pattern.
    fn of(all: Vec<Arc<Entry>>) -> Option<Claims> {
        let serving = Arc::clone(all.first()?);
        Some(Claims {
            serving,
            all: all.into(),
        })
    }

    /// `claims` with `entry` added in id order, warning when another object
    /// already claims the pattern.
    fn adding(claims: Option<&Claims>, entry: &Arc<Entry>, pattern: &HostPattern) -> Claims {
        let mut all = claims.map_or_else(Vec::new, |claims| claims.without(&entry.id));
        let at = all.partition_point(|held| held.id < entry.id);
        if let Some(first) = all.first() {
            let (kept, ignored) = if at == 0 {
                (&entry.id, &first.id)
            } else {
                (&first.id, &entry.id)
            };
            warn_duplicate(pattern, kept, ignored);
        }
        all.insert(at, Arc::clone(entry));
        Claims {
            serving: Arc::clone(&all[0]),
            all: all.into(),
        }
    }

    /// The claims of every object but `id`.
    fn without(&self, id: &str) -> Vec<Arc<Entry>> {
        self.all
            .iter()
            .filter(|held| &*held.id != id)
            .cloned()
            .collect()
    }
}

/// Whether an object serves handshakes at all.
fn serves(ssl: &ValidSsl) -> bool {
    ssl.enabled && ssl.kind == SslType::Server
}

/// The entry for `ssl`: `built` (its entry in the table being replaced) while
/// it is still for the same `Arc` with the same route CA names, else a new
/// one; why not, with a warning, when `ssl` cannot serve.
fn reuse_or_build(
    ssl: &Arc<ValidSsl>,
    requests: &RouteCertRequests,
    built: Option<&Arc<Entry>>,
) -> Result<Arc<Entry>, UnservedSsl> {
    let route_names = requests.names_for(&ssl.snis);
    let unchanged = built.filter(|entry| {
        Arc::ptr_eq(&entry.ssl, ssl) && entry.route_names.as_deref() == route_names.as_deref()
    });
    if let Some(entry) = unchanged {
        return Ok(Arc::clone(entry));
    }
    match Entry::build(ssl, route_names.as_deref()) {
        Ok(entry) => {
            // Once per change of the object, not per connection.
            for warning in &ssl.warnings {
                tracing::warn!(ssl_id = %ssl.id, %warning, "SSL object loaded with a warning");
            }
            Ok(Arc::new(entry))
        }
        Err(error) => {
            tracing::warn!(ssl_id = %ssl.id, %error, "SSL object skipped");
            Err(UnservedSsl {
                kind: error.kind(),
                reason: error.to_string().into(),
            })
        }
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
            .field("any", &self.any.as_ref().map(|claims| &claims.serving.id))
            .field("fallback", &self.fallback.as_ref().map(|entry| &entry.id))
            .finish()
    }
}

#[cfg(test)]
mod tests;
