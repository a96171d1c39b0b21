//! JSON Merge Patch (RFC 7386): a partial resource whose members replace the resource's, a
//! `null` removing one. What `fhirpy`'s `patch()` sends (as `application/json`), and what
//! Aidbox and others accept. The patch is no larger than the body limit, so the result is at
//! most the resource and the patch together, and no deeper than the deeper of the two: both
//! are checked once, after.

use super::PatchError;
use crate::fhir::nesting::{self, MAX_DEPTH};
use serde_json::Value;

/// Merge `patch` (a JSON object) into `doc`.
pub fn apply(doc: &mut Value, patch: &Value, max_bytes: usize) -> Result<(), PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed(
            "a merge patch is a JSON object: the members to set, null for those to remove".into(),
        ));
    }
    for key in ["resourceType", "id"] {
        if let Some(v) = patch.get(key)
            && doc.get(key) != Some(v)
        {
            return Err(PatchError::Failed(format!(
                "a patch may not change the resource's {key}"
            )));
        }
    }
    if nesting::depth(patch) > MAX_DEPTH {
        return Err(PatchError::TooLarge(format!(
            "the patch nests deeper than {MAX_DEPTH} levels"
        )));
    }
    merge(doc, patch);
    if super::encoded_len(doc, max_bytes) > max_bytes {
        return Err(PatchError::TooLarge(format!(
            "the patched resource would be larger than {max_bytes} bytes"
        )));
    }
    Ok(())
}

/// RFC 7386's MergePatch, walking down by an explicit stack rather than recursion. A member
/// new to the target starts as null, which RFC 7386 treats as an empty object to merge into.
fn merge(doc: &mut Value, patch: &Value) {
    let mut work: Vec<(&mut Value, &Value)> = vec![(doc, patch)];
    while let Some((target, patch)) = work.pop() {
        let Value::Object(members) = patch else {
            *target = patch.clone();
            continue;
        };
        if !target.is_object() {
            *target = Value::Object(Default::default());
        }
        let Value::Object(map) = target else { continue };
        for (k, v) in members {
            if v.is_null() {
                map.remove(k);
            } else if !map.contains_key(k) {
                map.insert(k.clone(), Value::Null);
            }
        }
        for (k, slot) in map.iter_mut() {
            if let Some(v) = members.get(k).filter(|v| !v.is_null()) {
                work.push((slot, v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_replace_and_null_removes() {
        let mut doc = json!({"resourceType": "Patient", "id": "p", "gender": "male",
                             "name": [{"family": "Ng"}], "contact": {"a": 1, "b": 2}});
        let patch = json!({"gender": null, "name": [{"family": "Ngo"}], "active": true,
                           "contact": {"a": null, "c": {"d": null, "e": 1}}});
        apply(&mut doc, &patch, 1 << 20).unwrap();
        assert_eq!(
            doc,
            json!({"resourceType": "Patient", "id": "p", "name": [{"family": "Ngo"}],
                   "active": true, "contact": {"b": 2, "c": {"e": 1}}})
        );
    }

    #[test]
    fn the_type_and_id_stay() {
        let mut doc = json!({"resourceType": "Patient", "id": "p"});
        let err = apply(&mut doc, &json!({"id": "q"}), 1 << 20).unwrap_err();
        assert!(matches!(err, PatchError::Failed(_)), "{err:?}");
        apply(
            &mut doc,
            &json!({"id": "p", "resourceType": "Patient"}),
            1 << 20,
        )
        .unwrap();
        let err = apply(&mut doc, &json!([1]), 1 << 20).unwrap_err();
        assert!(matches!(err, PatchError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn a_result_past_the_limit_is_refused() {
        let mut doc = json!({"resourceType": "Patient", "id": "p"});
        let err = apply(&mut doc, &json!({"text": {"div": "x".repeat(5000)}}), 4096).unwrap_err();
        assert!(matches!(err, PatchError::TooLarge(_)), "{err:?}");
    }
}
