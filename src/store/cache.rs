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

#[derive(Clone)]
pub struct ResourceCache {
    inner: Option<Cache<(String, String), Arc<Version>>>,
}

impl ResourceCache {
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        if capacity == 0 || ttl.is_zero() {
            return ResourceCache { inner: None };
        }
        let cache = Cache::builder()
            .max_capacity(capacity)
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
