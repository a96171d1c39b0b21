//! The profiles, tags and security labels in use on current resources (`$meta` of a type or
//! of the whole server), read from the search index (`_profile`, `_tag`, `_security`), which
//! holds the current versions only, by its (type, parameter) prefix.

use super::super::db::DbConnection;
use super::super::error::StoreError;
use super::super::schema::{search_token as t, search_uri as u};
use diesel::prelude::*;

/// At most this many distinct values of each set are reported.
const LIMIT: i64 = 1_000;

/// What resources of `types` carry.
#[derive(Debug, Default)]
pub struct InUse {
    pub profiles: Vec<String>,
    /// (system, code) of tags.
    pub tags: Vec<(Option<String>, Option<String>)>,
    pub security: Vec<(Option<String>, Option<String>)>,
}

pub fn in_use(conn: &mut DbConnection, types: &[&str]) -> Result<InUse, StoreError> {
    let mut out = InUse::default();
    for ty in types {
        let profiles: Vec<String> = u::table
            .filter(u::resource_type.eq(ty))
            .filter(u::param.eq("_profile"))
            .select(u::value)
            .distinct()
            .limit(LIMIT)
            .load(conn)?;
        merge(&mut out.profiles, profiles);
        for (param, into) in [("_tag", &mut out.tags), ("_security", &mut out.security)] {
            let found: Vec<(Option<String>, Option<String>)> = t::table
                .filter(t::resource_type.eq(ty))
                .filter(t::param.eq(param))
                .select((t::system, t::code))
                .distinct()
                .limit(LIMIT)
                .load(conn)?;
            merge(into, found);
        }
    }
    Ok(out)
}

fn merge<T: PartialEq + Ord>(into: &mut Vec<T>, found: Vec<T>) {
    for f in found {
        if !into.contains(&f) && into.len() < LIMIT as usize {
            into.push(f);
        }
    }
    into.sort();
}
