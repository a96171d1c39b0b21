//! Bundle shapes the server returns: history pages and batch/transaction responses.

use super::resource::instant;
use crate::store::{Method, Version};
use serde_json::{Map, Value, json};

/// One `Bundle.link`.
pub fn link(relation: &str, url: &str) -> Value {
    json!({ "relation": relation, "url": url })
}

/// A history Bundle entry for one version, as the spec's history interaction describes it.
pub fn history_entry(v: &Version, base: &str) -> Value {
    let mut entry = Map::new();
    entry.insert(
        "fullUrl".into(),
        json!(format!("{base}/{}/{}", v.resource_type, v.id)),
    );
    if !v.deleted {
        entry.insert("resource".into(), v.json());
    }
    let url = match v.method {
        Method::Post => v.resource_type.clone(),
        _ => format!("{}/{}", v.resource_type, v.id),
    };
    entry.insert(
        "request".into(),
        json!({ "method": v.method.as_str(), "url": url }),
    );
    let status = match v.method {
        Method::Post => "201 Created",
        Method::Delete => "204 No Content",
        _ if v.version_id == 1 => "201 Created",
        _ => "200 OK",
    };
    entry.insert(
        "response".into(),
        json!({
            "status": status,
            "etag": format!("W/\"{}\"", v.version_id),
            "lastModified": instant(v.last_updated),
        }),
    );
    Value::Object(entry)
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
