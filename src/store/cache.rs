//! Hot reads: the current version of recently read or written resources, in memory (moka).
//!
//! Writes refresh entries after their commit. An entry only ever moves to a higher version, so
//! a slow reader that loaded an older version cannot overwrite what a writer put in.
//! With several processes on one PostgreSQL, another process's writes are not seen here: the
//! TTL bounds how stale such a read can be (`--cache-ttl`, 0 turns the cache off).

use super::versions::Version;
use moka::ops::compute::Op;
use moka::sync::Cache;
use std::sync::Arc;
use std::time::Duration;

/// What an entry costs beyond its text: the `Version`, two `String`s, the `Arc`s and moka's
/// own bookkeeping (about 200 bytes by its documentation; rounded up).
const ENTRY_OVERHEAD: usize = 320;

#[derive(Clone)]
pub struct ResourceCache {
    inner: Option<Cache<(String, String), Arc<Version>>>,
}

impl ResourceCache {
    /// A cache holding at most `bytes` of resources (their JSON and keys, with a fixed
    /// allowance per entry): bounded by memory, not by a count, since one Bundle or
    /// DocumentReference weighs what a thousand Patients do.
    pub fn new(bytes: u64, ttl: Duration) -> Self {
        if bytes == 0 || ttl.is_zero() {
            return ResourceCache { inner: None };
        }
        let cache = Cache::builder()
            .max_capacity(bytes)
            .weigher(|key: &(String, String), v: &Arc<Version>| {
                let size = key.0.len() + key.1.len() + v.content.len() + ENTRY_OVERHEAD;
                u32::try_from(size).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl)
            .build();
        ResourceCache { inner: Some(cache) }
    }

    pub fn get(&self, rtype: &str, id: &str) -> Option<Arc<Version>> {
        let found = self
            .inner
            .as_ref()?
            .get(&(rtype.to_string(), id.to_string()));
        let result = if found.is_some() { "hit" } else { "miss" };
        metrics::counter!("emrsync_cache_requests_total", "result" => result).increment(1);
        found
    }

    /// Remember `version` unless a newer one is already cached.
    pub fn offer(&self, version: Arc<Version>) {
        let Some(cache) = &self.inner else { return };
        let key = (version.resource_type.clone(), version.id.clone());
        cache
            .entry(key)
            .and_compute_with(|existing| match existing {
                Some(e) if e.value().version_id >= version.version_id => Op::Nop,
                _ => Op::Put(version),
            });
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.as_ref().map(|c| c.entry_count()).unwrap_or(0)
    }
}
