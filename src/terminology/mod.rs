//! The terminology service: the store's CodeSystems, ValueSets and ConceptMaps, read by the
//! FHIR terminology operations (`$lookup`, `$validate-code`, `$subsumes`, `$expand`,
//! `$translate`) and by code normalisation on ingest.
//!
//! The resources are ordinary resources of the store (CRUD, search, history). Their rows
//! (`tables`: url and version, a code system's concepts and hierarchy) are written in each
//! version's transaction (`index`), or by an importer of a big system's release files. The
//! operations work on what those rows say, built once into memory (`code_system`,
//! `value_set`, `concept_map`) and kept until a terminology resource changes: every process
//! learns of its own changes at commit; another process's (several servers on one
//! PostgreSQL) reach it within the cache's time to live.

pub mod code_system;
pub mod concept_map;
pub mod index;
pub mod normalise;
pub mod ops;
pub mod package;
pub mod release;
pub mod renormalise;
pub mod search;
pub mod tables;
pub mod value_set;

use crate::store::{DbConnection, Store, StoreError, Version};
use code_system::CodeSystem;
use concept_map::Maps;
use moka::sync::Cache;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use value_set::Expansion;

/// What a terminology operation could not do, said to the client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TermError {
    /// A code system, value set, map or code the server does not know (404).
    #[error("{0}")]
    NotFound(String),
    /// A request or a definition that does not make sense (400).
    #[error("{0}")]
    Invalid(String),
    /// An answer larger than the server gives at once (422, with the count).
    #[error("{0}")]
    TooCostly(String),
    #[error("{0}")]
    Store(String),
    /// What was asked needs something not built yet, and the caller asked for an answer only
    /// from what is (`Terminology::warm`).
    #[error("not built yet")]
    Cold,
}

impl From<StoreError> for TermError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } | StoreError::Gone { .. } => {
                TermError::NotFound(e.to_string())
            }
            other => TermError::Store(other.to_string()),
        }
    }
}

thread_local! {
    /// Set while `Terminology::warm` runs an operation on this thread.
    static WARM_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A canonical url and a version ("" for the latest).
type UrlVersion = (String, String);

/// The terminology types, as `generations` counts them.
const CODE_SYSTEMS: usize = 0;
const VALUE_SETS: usize = 1;
const CONCEPT_MAPS: usize = 2;

/// Concepts an expansion may hold in memory; a value set larger than this is refused whole.
pub const MAX_EXPANSION_HELD: usize = 2_000_000;

pub struct Terminology {
    store: Store,
    /// One per terminology type (`index::TYPES`' order), each moved after every commit of a
    /// resource of that type in this process: what was built from that type is built again
    /// (a new ValueSet leaves a loaded code system of 100,000 concepts alone).
    generations: Arc<[AtomicU64; 3]>,
    // each keyed by the generation it was built at: a value built while a change committed
    // is kept under the old generation, which nobody asks for again
    systems: Cache<(u64, UrlVersion), Option<Arc<CodeSystem>>>,
    value_sets: Cache<(u64, UrlVersion), Option<Arc<Value>>>,
    expansions: Cache<(u64, UrlVersion), Arc<Expansion>>,
    maps: Cache<(u64, ()), Arc<Maps>>,
    rules: Cache<(u64, ()), Arc<normalise::Rules>>,
}

impl std::fmt::Debug for Terminology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminology").finish_non_exhaustive()
    }
}

/// Splits `url|version` (a canonical with its version) in two.
pub fn canonical(url: &str) -> (&str, Option<&str>) {
    match url.split_once('|') {
        Some((u, v)) if !v.is_empty() => (u, Some(v)),
        Some((u, _)) => (u, None),
        None => (url, None),
    }
}

impl Terminology {
    /// The service over `store`, told of its commits; entries live at most `ttl` (another
    /// process's changes are seen within it).
    pub fn new(store: Store, ttl: Duration) -> Arc<Terminology> {
        let ttl = ttl.max(Duration::from_secs(1));
        let generations = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        let t = Terminology {
            store: store.clone(),
            generations: generations.clone(),
            // code systems weigh their concepts: a million concepts in memory at most
            systems: Cache::builder()
                .max_capacity(1_000_000)
                .weigher(|_, v: &Option<Arc<CodeSystem>>| {
                    v.as_ref().map_or(1, |c| c.len().max(1) as u32)
                })
                .time_to_live(ttl)
                .build(),
            value_sets: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            expansions: Cache::builder()
                .max_capacity(MAX_EXPANSION_HELD as u64)
                .weigher(|_, v: &Arc<Expansion>| v.len().max(1) as u32)
                .time_to_live(ttl)
                .build(),
            maps: Cache::builder().max_capacity(2).time_to_live(ttl).build(),
            rules: Cache::builder().max_capacity(2).time_to_live(ttl).build(),
        };
        let (systems, value_sets, expansions) = (
            t.systems.clone(),
            t.value_sets.clone(),
            t.expansions.clone(),
        );
        let (maps, rules) = (t.maps.clone(), t.rules.clone());
        store.observe_commits(Arc::new(move |v: &Version| {
            let Some(i) = index::TYPES.iter().position(|t| *t == v.resource_type) else {
                return;
            };
            generations[i].fetch_add(1, Ordering::AcqRel);
            // what was built from the old generation is never asked for again: its memory
            // is given back now rather than when it expires
            match i {
                CODE_SYSTEMS => {
                    systems.invalidate_all();
                    expansions.invalidate_all();
                }
                VALUE_SETS => {
                    value_sets.invalidate_all();
                    expansions.invalidate_all();
                }
                _ => {
                    maps.invalidate_all();
                    rules.invalidate_all();
                }
            }
        }));
        Arc::new(t)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// `f`'s answer if it needs only what is built already (no database read, nothing to
    /// build), else None. Cheap operations on warm caches are answered on the request's own
    /// thread this way, without a hand-off to a blocking thread and back (which cost about
    /// half of a `$lookup`); the rest go to one.
    pub fn warm<T>(f: impl FnOnce() -> Result<T, TermError>) -> Option<Result<T, TermError>> {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                WARM_ONLY.with(|w| w.set(false));
            }
        }
        WARM_ONLY.with(|w| w.set(true));
        let _reset = Reset;
        match f() {
            Err(TermError::Cold) => None,
            other => Some(other),
        }
    }

    /// A read of the store, unless only what is built may be used.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&mut crate::store::DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, TermError> {
        if WARM_ONLY.with(|w| w.get()) {
            return Err(TermError::Cold);
        }
        Ok(self.store.read(f)?)
    }

    /// The generation of what is built from the types `from`: the sum of theirs, which moves
    /// whenever one of them does.
    fn generation(&self, from: &[usize]) -> u64 {
        from.iter()
            .map(|&i| self.generations[i].load(Ordering::Acquire))
            .sum()
    }

    /// `key`'s value from `cache` if built since the last change to the types it is built
    /// `from`, else `build` it. Callers asking for the same key at once wait for one build
    /// (eight clients asking for a cold 100,000-concept system load it once, not eight times).
    fn cached<K, T>(
        &self,
        (cache, from): (&Cache<(u64, K), T>, &[usize]),
        key: K,
        build: impl FnOnce() -> Result<T, TermError>,
    ) -> Result<T, TermError>
    where
        K: std::hash::Hash + Eq + Send + Sync + 'static,
        T: Clone + Send + Sync + 'static,
    {
        let generation = self.generation(from);
        let key = (generation, key);
        if WARM_ONLY.with(|w| w.get()) {
            return cache.get(&key).ok_or(TermError::Cold);
        }
        cache.try_get_with(key, build).map_err(|e| (*e).clone())
    }

    /// The code system `url` (at `version`, else its latest), when the server has it.
    pub fn code_system(
        &self,
        url: &str,
        version: Option<&str>,
    ) -> Result<Option<Arc<CodeSystem>>, TermError> {
        let key = (url.to_string(), version.unwrap_or("").to_string());
        self.cached((&self.systems, &[CODE_SYSTEMS]), key, || {
            self.store
                .read(|c| load_code_system(c, url, version))
                .map_err(TermError::from)
        })
    }

    /// The code system a CodeSystem resource is (by its id).
    pub fn code_system_of(&self, id: &str) -> Result<Arc<CodeSystem>, TermError> {
        let row = self
            .read(|c| tables::of_resource(c, "CodeSystem", id))?
            .ok_or_else(|| TermError::NotFound(format!("CodeSystem/{id} is not known")))?;
        let version = Some(row.version.as_str()).filter(|v| !v.is_empty());
        self.code_system(&row.url, version)?
            .ok_or_else(|| TermError::NotFound(format!("CodeSystem/{id} is not known")))
    }

    /// The ValueSet `url` (at `version`, else its latest).
    pub fn value_set(
        &self,
        url: &str,
        version: Option<&str>,
    ) -> Result<Option<Arc<Value>>, TermError> {
        let key = (url.to_string(), version.unwrap_or("").to_string());
        self.cached((&self.value_sets, &[VALUE_SETS]), key, || {
            self.store
                .read(|c| {
                    let Some(row) = pick(tables::by_url(c, "ValueSet", url)?, version) else {
                        return Ok(None);
                    };
                    let v = crate::store::versions::current(c, "ValueSet", &row.resource_id)?;
                    Ok(v.filter(|v| !v.deleted).map(|v| Arc::new(v.json())))
                })
                .map_err(TermError::from)
        })
    }

    /// The ValueSet resource `id`.
    pub fn value_set_of(&self, id: &str) -> Result<Arc<Value>, TermError> {
        let row = self
            .read(|c| tables::of_resource(c, "ValueSet", id))?
            .ok_or_else(|| TermError::NotFound(format!("ValueSet/{id} is not known")))?;
        let version = Some(row.version.as_str()).filter(|v| !v.is_empty());
        self.value_set(&row.url, version)?
            .ok_or_else(|| TermError::NotFound(format!("ValueSet/{id} is not known")))
    }

    /// The whole expansion of the value set `url` (at `version`), built once per change of the
    /// terminology.
    pub fn expansion(&self, url: &str, version: Option<&str>) -> Result<Arc<Expansion>, TermError> {
        let key = (url.to_string(), version.unwrap_or("").to_string());
        self.cached((&self.expansions, &[CODE_SYSTEMS, VALUE_SETS]), key, || {
            let vs = self.value_set(url, version)?.ok_or_else(|| {
                TermError::NotFound(format!("the value set {url} is not known to this server"))
            })?;
            value_set::expand(self, &vs).map(Arc::new)
        })
    }

    /// Every ConceptMap, indexed for `$translate`.
    pub fn maps(&self) -> Result<Arc<Maps>, TermError> {
        self.cached((&self.maps, &[CONCEPT_MAPS]), (), || {
            Ok(Arc::new(Maps::build(&self.concept_maps()?)))
        })
    }

    /// Every ConceptMap resource, as stored now.
    fn concept_maps(&self) -> Result<Vec<Value>, TermError> {
        Ok(self.store.read(|c| {
            let mut out = Vec::new();
            for row in tables::all_of(c, "ConceptMap")? {
                if let Some(v) = crate::store::versions::current(c, "ConceptMap", &row.resource_id)?
                    && !v.deleted
                {
                    out.push(v.json());
                }
            }
            Ok(out)
        })?)
    }
}

/// The row of `rows` (one url's resources) at `version`, else the latest version.
fn pick(rows: Vec<tables::Canonical>, version: Option<&str>) -> Option<tables::Canonical> {
    match version {
        Some(v) => rows.into_iter().find(|r| r.version == v),
        None => rows
            .into_iter()
            .max_by(|a, b| version_order(&a.version, &b.version)),
    }
}

/// Versions compared as their numbers where they have them (`2.10` after `2.9`), else as text.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<Result<u64, String>> {
        s.split(['.', '-'])
            .map(|p| p.parse::<u64>().map_err(|_| p.to_string()))
            .collect()
    };
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let o = match (x, y) {
            (Ok(x), Ok(y)) => x.cmp(y),
            (Ok(_), Err(_)) => std::cmp::Ordering::Greater,
            (Err(_), Ok(_)) => std::cmp::Ordering::Less,
            (Err(x), Err(y)) => x.cmp(y),
        };
        if o.is_ne() {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

fn load_code_system(
    conn: &mut DbConnection,
    url: &str,
    version: Option<&str>,
) -> Result<Option<Arc<CodeSystem>>, StoreError> {
    let Some(row) = pick(tables::by_url(conn, "CodeSystem", url)?, version) else {
        return Ok(None);
    };
    let Some(v) = crate::store::versions::current(conn, "CodeSystem", &row.resource_id)? else {
        return Ok(None);
    };
    if v.deleted {
        return Ok(None);
    }
    let header = v.json();
    let concepts = tables::concepts(conn, &row.resource_id)?;
    let parents = tables::parents(conn, &row.resource_id)?;
    Ok(Some(Arc::new(CodeSystem::build(
        &row.resource_id,
        &header,
        concepts,
        parents,
    ))))
}

/// The hook that keeps the terminology rows in each write's transaction (`index`).
#[derive(Debug, Default)]
pub struct Rows;

impl crate::ingest::hooks::Derived for Rows {
    fn record(&self, conn: &mut DbConnection, version: &Version) -> Result<(), StoreError> {
        index::record(conn, version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_by_their_numbers() {
        use std::cmp::Ordering::*;
        assert_eq!(version_order("2.10", "2.9"), Greater);
        assert_eq!(version_order("4.0.1", "4.0.1"), Equal);
        assert_eq!(version_order("1.0.0", "1.0"), Greater);
        assert_eq!(version_order("", "1"), Less);
        assert_eq!(canonical("http://x|2"), ("http://x", Some("2")));
        assert_eq!(canonical("http://x"), ("http://x", None));
    }

    #[test]
    fn each_type_has_its_own_generation() {
        assert_eq!(index::TYPES[CODE_SYSTEMS], "CodeSystem");
        assert_eq!(index::TYPES[VALUE_SETS], "ValueSet");
        assert_eq!(index::TYPES[CONCEPT_MAPS], "ConceptMap");
    }
}
