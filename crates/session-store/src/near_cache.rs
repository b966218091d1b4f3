//! The near cache: recently read sessions in this instance's memory, for eventual Gets only, kept
//! coherent by Valkey's invalidation messages ([`crate::tracking`]).
//!
//! Coherence rules (docs/benchmarks.md and docs/cloud.md explain the measurements):
//! * a hit is served only while every node's tracking connection is up (`healthy`); losing one
//!   empties the cache before it is marked healthy again;
//! * an invalidation or a write through this instance bumps a generation for the key's bucket; a
//!   read result is cached only if that generation did not move while the read was in flight, so
//!   a value read before a change can never be cached after the change's invalidation;
//! * entries expire at the session's own expiry; the cache is bounded in entries and bytes.

use std::{
    hash::{BuildHasher, RandomState},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use quick_cache::{Weighter, sync::Cache};

use session_core::{Session, now_ms};

/// Generation buckets: an invalidation blocks in-flight reads of 1/4096 of the keys only.
const BUCKETS: usize = 4096;

/// A cached session and when it stops being valid.
#[derive(Clone)]
struct Entry {
    session: Arc<Session>,
    expires_at_ms: u64,
    weight: u32,
}

/// An entry weighs its bytes (see [`NearCache::insert`]).
#[derive(Clone)]
struct ByWeight;

impl Weighter<Arc<str>, Entry> for ByWeight {
    fn weight(&self, _: &Arc<str>, entry: &Entry) -> u64 {
        entry.weight.into()
    }
}

/// Bounded, coherent cache of sessions by key.
///
/// `quick_cache` (sharded, CLOCK-Pro eviction): a hit is one read lock and an `Arc` clone, about
/// a tenth of what `moka`, the first choice here, cost per hit (docs/benchmarks.md). It has no
/// per-entry timers: an entry is never served after its session's expiry (checked on every hit,
/// and a hit on an expired entry removes it), and an expired entry nobody reads again holds its
/// weight until eviction reclaims it, within the same bounds.
pub struct NearCache {
    cache: Cache<Arc<str>, Entry, ByWeight>,
    generations: Box<[AtomicU64]>,
    hasher: RandomState,
    healthy: AtomicBool,
    /// Weight of the smallest entry: `max_bytes / max_entries`, so the weighted capacity bounds
    /// the number of entries as well as their bytes.
    floor: u32,
}

impl NearCache {
    /// A cache of at most `max_entries` sessions and about `max_bytes` of session data.
    pub fn new(max_entries: u64, max_bytes: u64) -> Arc<Self> {
        let floor = (max_bytes / max_entries.max(1)).clamp(1, u32::MAX as u64) as u32;
        Arc::new(Self {
            cache: Cache::with_weighter(
                usize::try_from(max_entries).unwrap_or(usize::MAX),
                max_bytes,
                ByWeight,
            ),
            generations: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
            healthy: AtomicBool::new(false),
            floor,
        })
    }

    fn bucket(&self, key: &str) -> &AtomicU64 {
        &self.generations[self.hasher.hash_one(key) as usize % BUCKETS]
    }

    /// Taken before a read; [`NearCache::insert`] caches the result only if it is unchanged.
    pub fn generation(&self, key: &str) -> u64 {
        self.bucket(key).load(Ordering::Acquire)
    }

    /// The cached session, while the cache is coherent and the session unexpired.
    /// A hit shares the cached session: nothing of it is copied here.
    pub fn get(&self, key: &str) -> Option<Arc<Session>> {
        if !self.healthy.load(Ordering::Acquire) {
            return None;
        }
        let entry = self.cache.get(key)?;
        if entry.expires_at_ms > now_ms() {
            return Some(entry.session);
        }
        self.cache.remove(key);
        None
    }

    /// Caches what a read returned, unless the key changed (or the cache lost coherence) since
    /// `generation` was taken.
    pub fn insert(&self, key: &str, session: &Arc<Session>, size: usize, generation: u64) {
        if !self.healthy.load(Ordering::Acquire) {
            return;
        }
        let entry = Entry {
            session: session.clone(),
            expires_at_ms: session.expires_at_ms(),
            weight: (size as u64 + 256).clamp(self.floor as u64, u32::MAX as u64) as u32,
        };
        if self.generation(key) != generation {
            return;
        }
        self.cache.insert(key.into(), entry);
        // An invalidation that raced the insert: drop what was just put.
        if self.generation(key) != generation || !self.healthy.load(Ordering::Acquire) {
            self.cache.remove(key);
        }
    }

    /// Forgets a key: it changed (an invalidation, or a write through this instance).
    pub fn invalidate(&self, key: &str) {
        self.bucket(key).fetch_add(1, Ordering::AcqRel);
        self.cache.remove(key);
    }

    /// Stops serving and forgets everything: a tracking connection was lost, so invalidations
    /// may have been missed.
    pub fn suspend(&self, reason: &'static str) {
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(reason, "near cache suspended and emptied");
        }
        metrics::counter!("near_cache_flushes_total", "reason" => reason).increment(1);
        self.clear();
    }

    /// Serves again, from an empty cache: every tracking connection is up.
    pub fn resume(&self) {
        self.clear();
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!("near cache serving");
        }
    }

    /// Empties the cache and moves every generation, so no in-flight read is cached.
    pub fn clear(&self) {
        for g in self.generations.iter() {
            g.fetch_add(1, Ordering::AcqRel);
        }
        self.cache.clear();
    }

    /// Whether hits are being served.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Entries held (approximate; for metrics and tests).
    pub fn entries(&self) -> u64 {
        self.cache.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::{Attributes, SessionId};

    fn session(expires_in_ms: u64) -> Session {
        let now = now_ms();
        Session {
            id: SessionId::generate(),
            attributes: Attributes::from([("a".into(), vec![1; 100])]),
            principal: String::new(),
            version: 1,
            created_at_ms: now,
            last_accessed_at_ms: now,
            idle_timeout_ms: expires_in_ms,
            absolute_expires_at_ms: None,
        }
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_cached() {
        let cache = NearCache::new(100, 1 << 20);
        cache.resume();
        let g = cache.generation("k");
        cache.invalidate("k");
        cache.insert("k", &Arc::new(session(60_000)), 100, g);
        assert!(cache.get("k").is_none(), "stale read refused");
        let g = cache.generation("k");
        cache.insert("k", &Arc::new(session(60_000)), 100, g);
        assert!(cache.get("k").is_some());
        cache.invalidate("k");
        assert!(cache.get("k").is_none());
    }

    #[test]
    fn nothing_is_served_or_kept_while_suspended() {
        let cache = NearCache::new(100, 1 << 20);
        let g = cache.generation("k");
        cache.insert("k", &Arc::new(session(60_000)), 100, g);
        assert!(cache.get("k").is_none(), "not healthy yet");
        cache.resume();
        let g = cache.generation("k");
        cache.insert("k", &Arc::new(session(60_000)), 100, g);
        assert!(cache.get("k").is_some());
        cache.suspend("test");
        assert!(cache.get("k").is_none());
        cache.resume();
        assert!(cache.get("k").is_none(), "resumed empty");
    }

    #[test]
    fn entries_expire_with_their_session_and_the_bounds_hold() {
        let cache = NearCache::new(50, 1 << 20);
        cache.resume();
        let g = cache.generation("short");
        cache.insert("short", &Arc::new(session(1)), 100, g);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(cache.get("short").is_none());
        for i in 0..500 {
            let key = format!("k{i}");
            let g = cache.generation(&key);
            cache.insert(&key, &Arc::new(session(60_000)), 100, g);
        }
        assert!(
            cache.entries() <= 50,
            "entries bounded: {}",
            cache.entries()
        );
    }
}
