//! Bundle shapes the server returns: history pages and batch/transaction responses.

use super::resource::instant;
use serde_json::{Map, Value, json};

/// One `Bundle.link`.
pub fn link(relation: &str, url: &str) -> Value {
    json!({ "relation": relation, "url": url })
}

/// A Bundle of `kind` with `entries`, `links` and an optional total.
pub fn bundle(kind: &str, total: Option<i64>, links: Vec<Value>, entries: Vec<Value>) -> Value {
    let mut b = Map::new();
    b.insert("resourceType".into(), json!("Bundle"));
    b.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
    b.insert(
        "meta".into(),
        json!({ "lastUpdated": instant(super::resource::now_micros()) }),
    );
    b.insert("type".into(), json!(kind));
    if let Some(t) = total {
        b.insert("total".into(), json!(t));
    }
    if !links.is_empty() {
        b.insert("link".into(), Value::Array(links));
    }
    if !entries.is_empty() {
        b.insert("entry".into(), Value::Array(entries));
    }
    Value::Object(b)
}
