//! A queued message for a FHIR target: a transaction Bundle of conditional updates by
//! identifier (`PUT Patient?identifier=system|value`), so that the target keeps its own ids and
//! the same change sent twice changes nothing more. The resources the change carries go with
//! those they refer to (as they are now), so that every reference of the Bundle resolves at the
//! target: references between them are the entries' `urn:uuid` full URLs (which the target
//! rewrites to its ids, as the transaction rules say); references further out are left out,
//! keeping their display. A deleted resource is a conditional delete.

use super::config::Target;
use super::dispatch::Changed;
use super::queue::Queued;
use super::render::{Rendered, Rendering, version_json};
use super::value_maps::ValueMaps;
use crate::store::db::DbConnection;
use crate::store::versions;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The identifier system under which a resource that has no identifier of its own is known to
/// targets: its id here (`Observation/123`).
pub const SOURCE_ID: &str = "http://emrsync.org/fhir/source-id";

/// The most resources one Bundle carries beside the changes (what they refer to).
const MAX_REFERRED: usize = 200;

/// Every relative reference (`Type/id`) in `v`, in document order.
fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("reference")
                && let Some((t, id)) = r.split_once('/')
                && !t.is_empty()
                && !id.is_empty()
                && t.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && !id.contains('/')
            {
                out.push(r.clone());
            }
            o.values().for_each(|x| references(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

/// References rewritten to the entries' full URLs; any other relative one left out.
fn rewrite(v: &mut Value, urls: &HashMap<String, String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("reference").cloned()
                && !r.starts_with("urn:")
                && !r.starts_with('#')
                && !r.contains("://")
            {
                match urls.get(&r) {
                    Some(url) => {
                        o.insert("reference".into(), json!(url));
                    }
                    None => {
                        o.remove("reference");
                    }
                }
            }
            o.values_mut().for_each(|x| rewrite(x, urls));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite(x, urls)),
        _ => {}
    }
}

/// The identifier a resource is known by at the target: for a Patient, the target's own
/// system when it has one; else its first identifier with a system and a value; else its id
/// here, added under `SOURCE_ID`.
fn key(rtype: &str, id: &str, resource: &mut Value, target: &Target) -> (String, String) {
    let ids = resource["identifier"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let usable = |i: &&Value| i["system"].is_string() && i["value"].is_string();
    let chosen = match (rtype, &target.identifier_system) {
        ("Patient", Some(system)) => ids
            .iter()
            .find(|i| i["system"] == system.as_str())
            .or_else(|| ids.iter().find(usable)),
        _ => ids.iter().find(usable),
    };
    if let Some(i) = chosen {
        return (
            i["system"].as_str().unwrap_or("").to_string(),
            i["value"].as_str().unwrap_or("").to_string(),
        );
    }
    let value = format!("{rtype}/{id}");
    let mut all = ids;
    all.push(json!({"system": SOURCE_ID, "value": value}));
    if let Some(o) = resource.as_object_mut() {
        o.insert("identifier".into(), Value::Array(all));
    }
    (SOURCE_ID.to_string(), value)
}

fn conditional(rtype: &str, (system, value): &(String, String)) -> String {
    let q: String =
        url::form_urlencoded::byte_serialize(format!("{system}|{value}").as_bytes()).collect();
    format!("{rtype}?identifier={q}")
}

/// Render `q` for a FHIR target: a transaction Bundle (as JSON text).
pub fn transaction(
    conn: &mut DbConnection,
    q: &Queued,
    target: &Target,
    maps: Option<&ValueMaps>,
) -> Rendering {
    let changes: Vec<Changed> = q.changes();
    // (type, id, the resource as sent or, when deleted, as it last was; deleted)
    let mut sent: Vec<(String, String, Value, bool)> = Vec::new();
    for c in &changes {
        let now = version_json(conn, c, c.version)?;
        match now {
            Some(v) => sent.push((c.rtype.clone(), c.id.clone(), v, false)),
            None => {
                if let Some(before) = version_json(conn, c, c.version - 1)? {
                    sent.push((c.rtype.clone(), c.id.clone(), before, true));
                }
            }
        }
    }
    if sent.is_empty() {
        return Ok(Ok(Rendered::Nothing(
            "the resources it carries are gone".into(),
        )));
    }
    // what they refer to, as it is now
    let mut referred: Vec<String> = Vec::new();
    for (_, _, v, deleted) in &sent {
        if !deleted {
            references(v, &mut referred);
        }
    }
    let mut seen: Vec<String> = sent.iter().map(|(t, id, ..)| format!("{t}/{id}")).collect();
    for r in referred {
        if seen.contains(&r) || seen.len() >= sent.len() + MAX_REFERRED {
            continue;
        }
        seen.push(r.clone());
        let (t, id) = r.split_once('/').expect("a relative reference");
        if let Some(v) = versions::current(conn, t, id)?.filter(|v| !v.deleted) {
            sent.push((t.to_string(), id.to_string(), v.json(), false));
        }
    }
    let urls: HashMap<String, String> = sent
        .iter()
        .filter(|s| !s.3)
        .map(|(t, id, ..)| {
            (
                format!("{t}/{id}"),
                format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            )
        })
        .collect();
    let mut entries = Vec::with_capacity(sent.len());
    for (t, id, mut resource, deleted) in sent {
        let k = key(&t, &id, &mut resource, target);
        let url = conditional(&t, &k);
        if deleted {
            entries.push(json!({"request": {"method": "DELETE", "url": url}}));
            continue;
        }
        if let Some(o) = resource.as_object_mut() {
            o.remove("id");
            o.remove("meta");
        }
        rewrite(&mut resource, &urls);
        if let Some(maps) = maps {
            maps.apply(&mut resource);
        }
        entries.push(json!({
            "fullUrl": urls[&format!("{t}/{id}")],
            "resource": resource,
            "request": {"method": "PUT", "url": url},
        }));
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    Ok(Ok(Rendered::Message {
        kind: "Bundle/transaction".into(),
        text: bundle.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_and_rewritten_or_left_out() {
        let mut enc = json!({"subject": {"reference": "Patient/p1", "display": "Ann"},
            "location": [{"location": {"reference": "Location/l1", "display": "4W"}}],
            "serviceProvider": {"reference": "https://other.example.org/fhir/Organization/1"},
            "contained": [{"id": "x"}], "basedOn": [{"reference": "#x"}]});
        let mut found = Vec::new();
        references(&enc, &mut found);
        assert_eq!(found, ["Patient/p1", "Location/l1"]);
        let urls = HashMap::from([("Patient/p1".to_string(), "urn:uuid:1".to_string())]);
        rewrite(&mut enc, &urls);
        assert_eq!(
            enc["subject"],
            json!({"reference": "urn:uuid:1", "display": "Ann"})
        );
        assert_eq!(enc["location"][0]["location"], json!({"display": "4W"}));
        assert_eq!(
            enc["serviceProvider"]["reference"],
            "https://other.example.org/fhir/Organization/1"
        );
        assert_eq!(enc["basedOn"][0]["reference"], "#x");
        assert_eq!(
            conditional("Patient", &("urn:oid:1.2".into(), "M 1|x".into())),
            "Patient?identifier=urn%3Aoid%3A1.2%7CM+1%7Cx"
        );
    }
}
