//! Paging links of history and search Bundles. Pages are cut by a cursor (`_cursor`): the
//! last position the previous page showed, so writes made while a client pages through a
//! result neither repeat nor skip what it sees.

use crate::fhir::bundle::link;
use serde_json::Value;

/// The query parameter that carries the cursor.
pub const CURSOR: &str = "_cursor";

/// `self`, `first` and (when their cursors are given) `next` and `previous` links for `path`
/// with `params`.
pub fn links(
    path: &str,
    params: &[(String, String)],
    next_cursor: Option<String>,
    previous_cursor: Option<String>,
) -> Vec<Value> {
    let keep: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != CURSOR).collect();
    let url = |extra: Option<(String, String)>| {
        let mut all: Vec<(String, String)> = keep.iter().map(|p| (*p).clone()).collect();
        all.extend(extra);
        let qs = serde_urlencoded::to_string(&all).unwrap_or_default();
        if qs.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{qs}")
        }
    };
    let this = params
        .iter()
        .find(|(k, _)| k == CURSOR)
        .map(|(_, v)| (CURSOR.to_string(), v.clone()));
    let mut out = vec![link("self", &url(this)), link("first", &url(None))];
    if let Some(c) = next_cursor {
        out.push(link("next", &url(Some((CURSOR.to_string(), c)))));
    }
    if let Some(c) = previous_cursor {
        out.push(link("previous", &url(Some((CURSOR.to_string(), c)))));
    }
    out
}
