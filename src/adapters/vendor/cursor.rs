//! Where the reading of one record type stands, and how it moves on: the stored cursor, the
//! next page's place in the page just read, and which change value is the newer.

use super::source::Paging;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the reading of one record type stands (the cursor's stored form).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Cursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
    /// The ETag of the last reading's first page: the next reading asks if it still holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The ETag of the first page of the reading under way (its `etag` when it ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh: Option<String>,
}

/// Whether the change value `v` is newer than `than`: as numbers when both are integers (a
/// sequence number: 10 is after 9), else as text (ISO 8601 times in one zone sort so).
pub(super) fn newer(v: &str, than: &str) -> bool {
    match (v.parse::<i128>(), than.parse::<i128>()) {
        (Ok(a), Ok(b)) => a > b,
        _ => v > than,
    }
}

/// The next page's place, from the page just read (`None`: it was the last).
pub(super) fn next_page(
    paging: &Paging,
    next: Option<&serde_json_path::JsonPath>,
    body: &Value,
    cursor: &Cursor,
    records: usize,
) -> Option<String> {
    match paging {
        Paging::None => None,
        Paging::Page { size, first, .. } => {
            if records < *size as usize {
                return None;
            }
            let n: u64 = cursor
                .next
                .as_deref()
                .and_then(|n| n.parse().ok())
                .unwrap_or(*first);
            Some((n + 1).to_string())
        }
        Paging::Cursor { .. } | Paging::Link { .. } => {
            let found = next?.query(body).at_most_one().ok().flatten()?;
            match found {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::newer;

    #[test]
    fn sequence_numbers_are_compared_as_numbers_and_times_as_text() {
        assert!(newer("10", "9"));
        assert!(!newer("9", "10"));
        assert!(newer("2026-12-07T08:00:10Z", "2026-12-07T08:00:09Z"));
        assert!(!newer("2026-12-07T08:00:09Z", "2026-12-07T08:00:10Z"));
        // not both numbers: as text
        assert!(newer("b", "a"));
        assert!(newer("9a", "10"));
    }
}
