//! Patches applied within bounds: JSON Patch (RFC 6902) here, JSON Merge Patch (`merge`) and
//! FHIRPath Patch (`fhirpath`) beside it.
//!
//! A JSON Patch is small, but its `copy` operations double what they copy: twenty of them turn
//! a resource into hundreds of MB, and `copy` into a path inside its own source nests the
//! result one level deeper each time. So a patch has at most [`MAX_OPERATIONS`], and before
//! each operation runs, the size and depth it would give the resource are reckoned from what
//! it adds (as if nothing were ever taken away), and refused past the bounds a resource sent
//! whole would meet (the body limit, `nesting::MAX_DEPTH`). The result is then validated like
//! any write, by the caller.

use super::nesting::{self, MAX_DEPTH};
use json_patch::PatchOperation;
use serde_json::Value;

pub mod fhirpath;
pub mod merge;
pub mod meta;

/// A patch in one of the three forms a PATCH may carry, told apart by its Content-Type (and,
/// for a FHIR JSON body, by being a Parameters resource).
#[derive(Debug, Clone)]
pub enum Patch {
    /// JSON Patch (RFC 6902), `application/json-patch+json`.
    Json(Value),
    /// JSON Merge Patch (RFC 7386), `application/merge-patch+json`, or a partial resource.
    Merge(Value),
    /// FHIRPath Patch: a Parameters resource of operations.
    FhirPath(Value),
    /// `$meta-add` (true) or `$meta-delete` (false) of a Meta's profiles, tags and labels.
    Meta(Value, bool),
}

impl Patch {
    /// Apply to `doc`; on error `doc` may be half-patched: callers patch a copy.
    pub fn apply(&self, doc: &mut Value, max_bytes: usize) -> Result<(), PatchError> {
        match self {
            Patch::Json(ops) => apply(doc, ops, max_bytes),
            Patch::Merge(p) => merge::apply(doc, p, max_bytes),
            Patch::FhirPath(p) => fhirpath::apply(doc, p, max_bytes),
            Patch::Meta(m, add) => {
                meta::apply(doc, m, *add)?;
                match encoded_len(doc, max_bytes) > max_bytes {
                    true => Err(PatchError::TooLarge(format!(
                        "the resource would be larger than {max_bytes} bytes"
                    ))),
                    false => Ok(()),
                }
            }
        }
    }
}

/// Operations one patch may hold: real patches hold a handful.
pub const MAX_OPERATIONS: usize = 1_000;

/// Why a patch was not applied.
#[derive(Debug, PartialEq)]
pub enum PatchError {
    /// Not a JSON Patch document, or more operations than allowed (400).
    Malformed(String),
    /// The result would be larger or deeper than a resource may be (413).
    TooLarge(String),
    /// An operation failed: a path that is not there, a `test` that did not hold (422).
    Failed(String),
}

/// Apply `operations` to `doc`. On error `doc` may be half-patched: callers patch a copy.
pub fn apply(doc: &mut Value, operations: &Value, max_bytes: usize) -> Result<(), PatchError> {
    let count = operations.as_array().map_or(0, Vec::len);
    if count > MAX_OPERATIONS {
        return Err(PatchError::Malformed(format!(
            "the patch has {count} operations; at most {MAX_OPERATIONS} are accepted"
        )));
    }
    let ops: Vec<PatchOperation> = serde_json::from_value(operations.clone())
        .map_err(|e| PatchError::Malformed(format!("not a JSON Patch document: {e}")))?;
    let mut size = encoded_len(doc, max_bytes);
    for (i, op) in ops.iter().enumerate() {
        // what the operation puts into the document, and where
        let added = match op {
            PatchOperation::Add(o) => Some((&o.value, o.path.as_str())),
            PatchOperation::Replace(o) => Some((&o.value, o.path.as_str())),
            PatchOperation::Copy(o) => doc.pointer(o.from.as_str()).map(|v| (v, o.path.as_str())),
            PatchOperation::Move(o) => doc.pointer(o.from.as_str()).map(|v| (v, o.path.as_str())),
            PatchOperation::Remove(_) | PatchOperation::Test(_) => None,
        };
        if let Some((value, path)) = added {
            let levels = path.matches('/').count() + nesting::depth(value);
            if levels > MAX_DEPTH {
                return Err(PatchError::TooLarge(format!(
                    "operation {i} would nest the resource {levels} levels deep; at most \
                     {MAX_DEPTH} are accepted"
                )));
            }
            // counted as if nothing were ever taken away (a move, a replace): an upper bound
            // that keeps the cost of measuring within the limit too
            size += encoded_len(value, max_bytes.saturating_sub(size) + 1);
            if size > max_bytes {
                return Err(PatchError::TooLarge(format!(
                    "operation {i} would make the resource larger than {max_bytes} bytes"
                )));
            }
        }
        json_patch::patch_unsafe(doc, std::slice::from_ref(op))
            .map_err(|e| PatchError::Failed(format!("patch failed: {e}")))?;
    }
    Ok(())
}

/// About how many bytes `value` takes as JSON, counted without writing it and without
/// recursion, up to `cap` (the count stops there: a copy of a large subtree costs no more to
/// measure than the room left).
fn encoded_len(value: &Value, cap: usize) -> usize {
    let mut total = 0usize;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        total += match v {
            Value::Null => 4,
            Value::Bool(_) => 5,
            Value::Number(n) => n.to_string().len(),
            Value::String(s) => s.len() + 2,
            Value::Array(items) => {
                stack.extend(items);
                2 + items.len()
            }
            Value::Object(map) => {
                stack.extend(map.values());
                2 + map.keys().map(|k| k.len() + 4).sum::<usize>()
            }
        };
        if total > cap {
            return total;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patient() -> Value {
        json!({"resourceType": "Patient", "id": "p", "name": [{"family": "Ng", "given": ["A"]}]})
    }

    #[test]
    fn ordinary_patches_apply() {
        let mut doc = patient();
        let ops = json!([
            {"op": "test", "path": "/name/0/family", "value": "Ng"},
            {"op": "replace", "path": "/name/0/family", "value": "Ngo"},
            {"op": "add", "path": "/gender", "value": "female"},
            {"op": "copy", "from": "/name/0", "path": "/name/-"},
            {"op": "move", "from": "/name/1/given", "path": "/name/0/suffix"},
            {"op": "remove", "path": "/name/1"},
        ]);
        apply(&mut doc, &ops, 1 << 20).unwrap();
        assert_eq!(
            doc,
            json!({"resourceType": "Patient", "id": "p", "gender": "female",
                   "name": [{"family": "Ngo", "given": ["A"], "suffix": ["A"]}]})
        );
    }

    #[test]
    fn copies_that_double_the_resource_stop_at_the_size_limit() {
        let mut doc = patient();
        doc["text"] = json!({"status": "generated", "div": "x".repeat(10_000)});
        // each copy doubles the array: 20 of them would make 10 GB
        let mut ops = vec![json!({"op": "add", "path": "/contained", "value": [doc.clone()]})];
        for _ in 0..20 {
            ops.push(json!({"op": "copy", "from": "/contained", "path": "/contained/-"}));
        }
        let err = apply(&mut doc, &Value::Array(ops), 1 << 20).unwrap_err();
        assert!(
            matches!(&err, PatchError::TooLarge(m) if m.contains("larger than")),
            "{err:?}"
        );
    }

    #[test]
    fn copies_into_themselves_stop_at_the_depth_limit() {
        let mut doc = json!({"resourceType": "Basic", "id": "b", "extension": [{"url": "u"}]});
        let ops: Vec<Value> = (0..200)
            .map(|_| json!({"op": "copy", "from": "/extension", "path": "/extension/0/extension"}))
            .collect();
        let err = apply(&mut doc, &Value::Array(ops), 1 << 30).unwrap_err();
        assert!(
            matches!(&err, PatchError::TooLarge(m) if m.contains("levels deep")),
            "{err:?}"
        );
        assert!(nesting::depth(&doc) <= MAX_DEPTH);
    }

    #[test]
    fn too_many_operations_or_not_a_patch_are_malformed() {
        let ops: Vec<Value> = (0..=MAX_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "/id", "value": "p"}))
            .collect();
        let err = apply(&mut patient(), &Value::Array(ops), 1 << 20).unwrap_err();
        assert!(matches!(err, PatchError::Malformed(_)), "{err:?}");
        let err = apply(&mut patient(), &json!({"op": "add"}), 1 << 20).unwrap_err();
        assert!(matches!(err, PatchError::Malformed(_)), "{err:?}");
        let err = apply(
            &mut patient(),
            &json!([{"op": "remove", "path": "/nothing"}]),
            1 << 20,
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::Failed(_)), "{err:?}");
    }
}
