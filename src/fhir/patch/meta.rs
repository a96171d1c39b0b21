//! `$meta-add` and `$meta-delete` as a change of the resource: the profiles, tags and security
//! labels of a `Meta` added to (or taken from) the resource's own. They are sets: a tag or
//! label is the same as another with its system and code (version and display aside), a
//! profile by its whole URL. Applied as a patch, so the change takes the write's path: a new
//! version, validated, audited and sent to subscribers like any other.

use super::PatchError;
use serde_json::{Map, Value};

/// The three set-valued elements of `Meta` these operations change.
const SETS: [&str; 3] = ["profile", "tag", "security"];

/// Add (`add`) or remove the profiles, tags and security labels of `change` (a Meta) to or
/// from `doc`'s meta.
pub fn apply(doc: &mut Value, change: &Value, add: bool) -> Result<(), PatchError> {
    let Some(change) = change.as_object() else {
        return Err(PatchError::Malformed("'meta' must be a Meta".into()));
    };
    let Some(resource) = doc.as_object_mut() else {
        return Err(PatchError::Failed("the resource is not an object".into()));
    };
    let meta = resource
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return Err(PatchError::Failed(
            "the resource's meta is not an object".into(),
        ));
    };
    for set in SETS {
        let Some(given) = change.get(set) else {
            continue;
        };
        let Some(given) = given.as_array() else {
            return Err(PatchError::Malformed(format!("meta.{set} must be a list")));
        };
        let mut items: Vec<Value> = meta
            .get(set)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for g in given {
            let at = items.iter().position(|i| same(set, i, g));
            match (add, at) {
                (true, None) => items.push(g.clone()),
                (false, Some(i)) => {
                    items.remove(i);
                }
                _ => {}
            }
        }
        match items.is_empty() {
            true => meta.remove(set),
            false => meta.insert(set.to_string(), Value::Array(items)),
        };
    }
    Ok(())
}

/// Whether two members of a set are one: profiles by URL, codings by system and code.
fn same(set: &str, a: &Value, b: &Value) -> bool {
    match set {
        "profile" => a == b,
        _ => a.get("system") == b.get("system") && a.get("code") == b.get("code"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sets_are_added_to_and_taken_from_by_identity() {
        let mut doc = json!({"resourceType": "Patient", "id": "p",
                             "meta": {"tag": [{"system": "s", "code": "a", "display": "A"}]}});
        let change = json!({"tag": [{"system": "s", "code": "a"}, {"system": "s", "code": "b"}],
                            "security": [{"system": "v3", "code": "R"}],
                            "profile": ["http://example.org/p"]});
        apply(&mut doc, &change, true).unwrap();
        assert_eq!(
            doc["meta"],
            json!({"tag": [{"system": "s", "code": "a", "display": "A"}, {"system": "s", "code": "b"}],
                   "security": [{"system": "v3", "code": "R"}], "profile": ["http://example.org/p"]})
        );
        apply(
            &mut doc,
            &json!({"tag": [{"system": "s", "code": "a", "display": "x"}],
                                "profile": ["http://example.org/p"]}),
            false,
        )
        .unwrap();
        assert_eq!(
            doc["meta"],
            json!({"tag": [{"system": "s", "code": "b"}], "security": [{"system": "v3", "code": "R"}]})
        );
        assert!(matches!(
            apply(&mut doc, &json!({"tag": "x"}), true),
            Err(PatchError::Malformed(_))
        ));
    }
}
