//! The answers of OCSP responders and CRL distribution points, shared by
//! every SSL object and route: bounded (least recently used out first),
//! each answer kept until its own expiry or the asker's `cache_ttl`,
//! whichever comes first, and fetched at most once at a time per key (the
//! askers of a key being fetched share that one fetch).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::Instant;

/// A cached answer, and whether it is due for a refresh (past three
/// quarters of its life): it is still used while the refresh runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit<V> {
    pub(crate) value: V,
    pub(crate) refresh: bool,
}

/// Resolves once the fetch of a key has stored its answer (or was dropped).
pub(crate) struct Pending(watch::Receiver<bool>);

impl Pending {
    pub(crate) async fn done(mut self) {
        // An error means the fetch task ended without storing: nothing to
        // wait for either way.
        let _ = self.0.wait_for(|done| *done).await;
    }
}

pub(crate) struct Cache<K, V> {
    capacity: usize,
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    in_flight: HashMap<K, watch::Receiver<bool>>,
    /// Use counter for least-recently-used eviction.
    tick: u64,
}

struct Entry<V> {
    value: V,
    fetched: Instant,
    /// The answer's own end (`nextUpdate`, or a short time for failures).
    expires: Instant,
    used: u64,
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    pub(crate) fn new(capacity: usize) -> Cache<K, V> {
        Cache {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                in_flight: HashMap::new(),
                tick: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer for `key` if it is still valid at `now` under `ttl`.
    pub(crate) fn get(&self, key: &K, ttl: Duration, now: Instant) -> Option<Hit<V>> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(key)?;
        let end = entry.expires.min(entry.fetched + ttl);
        if now >= end {
            inner.entries.remove(key);
            return None;
        }
        entry.used = tick;
        let life = end.saturating_duration_since(entry.fetched);
        Some(Hit {
            value: entry.value.clone(),
            refresh: now >= entry.fetched + life.mul_f32(0.75),
        })
    }

    /// Fetches `key` on `runtime` unless a fetch of it is already running,
    /// in which case `fetch` is dropped unpolled. The fetch yields the answer
    /// and its own expiry.
    pub(crate) fn fetch<F>(self: &Arc<Self>, key: K, runtime: &Handle, fetch: F) -> Pending
    where
        F: Future<Output = (V, Instant)> + Send + 'static,
    {
        let mut inner = self.lock();
        if let Some(running) = inner.in_flight.get(&key) {
            return Pending(running.clone());
        }
        let (done, pending) = watch::channel(false);
        inner.in_flight.insert(key.clone(), pending.clone());
        drop(inner);
        let cache = Arc::clone(self);
        runtime.spawn(async move {
            let (value, expires) = fetch.await;
            cache.store(key, value, expires);
            let _ = done.send(true);
        });
        Pending(pending)
    }

    /// The fetch of `key` running now, if any.
    pub(crate) fn pending(&self, key: &K) -> Option<Pending> {
        self.lock().in_flight.get(key).cloned().map(Pending)
    }

    fn store(&self, key: K, value: V, expires: Instant) {
        let mut inner = self.lock();
        inner.in_flight.remove(&key);
        inner.tick += 1;
        let used = inner.tick;
        if !inner.entries.contains_key(&key) && inner.entries.len() >= self.capacity {
            evict_least_recent(&mut inner.entries);
        }
        let entry = Entry {
            value,
            fetched: Instant::now(),
            expires,
            used,
        };
        inner.entries.insert(key, entry);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

/// O(n), but only when a new answer arrives in a full cache.
fn evict_least_recent<K: Hash + Eq + Clone, V>(entries: &mut HashMap<K, Entry<V>>) {
    let oldest = entries
        .iter()
        .min_by_key(|(_, entry)| entry.used)
        .map(|(key, _)| key.clone());
    if let Some(key) = oldest {
        entries.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn answer(cache: &Arc<Cache<u32, &'static str>>, key: u32, value: &'static str) -> Pending {
        let expires = Instant::now() + HOUR;
        cache.fetch(key, &Handle::current(), async move { (value, expires) })
    }

    #[tokio::test]
    async fn concurrent_askers_share_one_fetch() {
        let cache = Arc::new(Cache::new(8));
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, released) = watch::channel(false);
        let waits: Vec<Pending> = (0..10)
            .map(|_| {
                let calls = Arc::clone(&calls);
                let mut released = released.clone();
                cache.fetch(1u32, &Handle::current(), async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let _ = released.wait_for(|go| *go).await;
                    ("good", Instant::now() + HOUR)
                })
            })
            .collect();
        release.send(true).unwrap();
        for wait in waits {
            wait.done().await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let hit = cache.get(&1, HOUR, Instant::now()).unwrap();
        assert_eq!(hit.value, "good");
        // Once stored, a new fetch runs again (a refresh).
        answer(&cache, 1, "revoked").done().await;
        assert_eq!(
            cache.get(&1, HOUR, Instant::now()).unwrap().value,
            "revoked"
        );
    }

    #[tokio::test]
    async fn the_least_recently_used_answer_leaves_a_full_cache() {
        let cache = Arc::new(Cache::new(2));
        answer(&cache, 1, "a").done().await;
        answer(&cache, 2, "b").done().await;
        assert!(cache.get(&1, HOUR, Instant::now()).is_some());
        answer(&cache, 3, "c").done().await;
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(&2, HOUR, Instant::now()).is_none(),
            "2 was used least recently"
        );
        assert!(cache.get(&1, HOUR, Instant::now()).is_some());
        assert!(cache.get(&3, HOUR, Instant::now()).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn answers_expire_at_their_end_or_the_ttl_and_are_refreshed_before() {
        let cache: Arc<Cache<u32, &str>> = Arc::new(Cache::new(8));
        let short = Instant::now() + Duration::from_secs(100);
        cache
            .fetch(1, &Handle::current(), async move { ("good", short) })
            .done()
            .await;
        let at = |secs| Instant::now() + Duration::from_secs(secs);
        let hit = cache.get(&1, HOUR, at(10)).unwrap();
        assert!(!hit.refresh);
        assert!(cache.get(&1, HOUR, at(80)).unwrap().refresh);
        assert!(cache.get(&1, HOUR, at(100)).is_none());
        answer(&cache, 2, "good").done().await;
        assert!(cache.get(&2, HOUR, at(3599)).is_some());
        assert!(cache.get(&2, HOUR, at(3600)).is_none());
        assert!(
            cache.get(&2, HOUR, Instant::now()).is_none(),
            "expired answers are dropped"
        );
        // The asker's ttl comes first.
        answer(&cache, 3, "good").done().await;
        let ttl = Duration::from_secs(20);
        assert!(cache.get(&3, ttl, at(14)).is_some_and(|hit| !hit.refresh));
        assert!(cache.get(&3, ttl, at(16)).is_some_and(|hit| hit.refresh));
        assert!(cache.get(&3, ttl, at(20)).is_none());
    }
}
