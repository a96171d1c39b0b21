//! FHIRPath Patch (R4 §3.1.0.8.1 of the http page's patch section): a `Parameters` resource
//! whose `operation` parameters each name a `type` (add, insert, delete, replace, move), a
//! FHIRPath `path` and what the type needs (`name`, `value`, `index`, `source`,
//! `destination`). The path is evaluated by the FHIRPath the search parameters use; the items
//! it selects are found again in the document by their address, so that the operation edits
//! them where they are. Bounds: at most `MAX_OPERATIONS`; values come from the body, which the
//! body limit already bounds, and no operation copies, so the result is checked for size and
//! depth once, after.

use super::{MAX_OPERATIONS, PatchError, encoded_len};
use crate::fhir::definitions::Definitions;
use crate::fhir::fhirpath::{self, Expr, Out};
use crate::fhir::nesting::{self, MAX_DEPTH};
use serde_json::{Map, Value};

/// Whether `body` is a FHIRPath Patch document (a Parameters resource of operations).
pub fn is_fhirpath_patch(body: &Value) -> bool {
    body.get("resourceType").and_then(Value::as_str) == Some("Parameters")
}

/// Apply the operations of `params` to `doc` in order. On error `doc` may be half-patched:
/// callers patch a copy.
pub fn apply(doc: &mut Value, params: &Value, max_bytes: usize) -> Result<(), PatchError> {
    let ops = params
        .get("parameter")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            malformed("a FHIRPath Patch is a Parameters resource with parameters named 'operation'")
        })?;
    if ops.len() > MAX_OPERATIONS {
        return Err(malformed(format!(
            "the patch has {} operations; at most {MAX_OPERATIONS} are accepted",
            ops.len()
        )));
    }
    for (i, op) in ops.iter().enumerate() {
        let op = Operation::read(op).map_err(|e| malformed(format!("operation {i}: {e}")))?;
        op.apply(doc)
            .map_err(|e| PatchError::Failed(format!("operation {i} ({}): {e}", op.kind)))?;
    }
    if nesting::depth(doc) > MAX_DEPTH {
        return Err(PatchError::TooLarge(format!(
            "the patched resource would nest deeper than {MAX_DEPTH} levels"
        )));
    }
    if encoded_len(doc, max_bytes) > max_bytes {
        return Err(PatchError::TooLarge(format!(
            "the patched resource would be larger than {max_bytes} bytes"
        )));
    }
    Ok(())
}

fn malformed(m: impl Into<String>) -> PatchError {
    PatchError::Malformed(m.into())
}

/// One operation as read from its parts.
struct Operation<'a> {
    kind: &'a str,
    path: Expr,
    name: Option<&'a str>,
    /// The value and, for a `value[x]`, the type its key names (`Quantity` for valueQuantity).
    value: Option<(Value, Option<&'a str>)>,
    index: Option<usize>,
    source: Option<usize>,
    destination: Option<usize>,
}

impl<'a> Operation<'a> {
    fn read(op: &'a Value) -> Result<Operation<'a>, String> {
        if op.get("name").and_then(Value::as_str) != Some("operation") {
            return Err("every parameter must be named 'operation'".into());
        }
        let parts = op
            .get("part")
            .and_then(Value::as_array)
            .ok_or("an operation has parts (type, path, ...)")?;
        let part = |name: &str| {
            parts
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        };
        let text = |name: &str, key: &str| part(name).and_then(|p| p.get(key)?.as_str());
        let number = |name: &str| -> Result<Option<usize>, String> {
            match part(name) {
                None => Ok(None),
                Some(p) => p
                    .get("valueInteger")
                    .and_then(Value::as_u64)
                    .map(|n| Some(n as usize))
                    .ok_or_else(|| format!("'{name}' must be a valueInteger of 0 or more")),
            }
        };
        let kind = text("type", "valueCode").ok_or("no 'type' (valueCode)")?;
        if !matches!(kind, "add" | "insert" | "delete" | "replace" | "move") {
            return Err(format!(
                "type '{kind}' is none of add, insert, delete, replace, move"
            ));
        }
        let path = text("path", "valueString").ok_or("no 'path' (valueString)")?;
        let path = fhirpath::parse(path).map_err(|e| format!("path '{path}': {e}"))?;
        let value = part("value").map(value_of).transpose()?;
        let op = Operation {
            kind,
            path,
            name: text("name", "valueString"),
            value,
            index: number("index")?,
            source: number("source")?,
            destination: number("destination")?,
        };
        let needs = |what: bool, name: &str| match what {
            true => Ok(()),
            false => Err(format!("a '{kind}' operation needs '{name}'")),
        };
        match kind {
            "add" => needs(op.name.is_some(), "name").and(needs(op.value.is_some(), "value"))?,
            "insert" => {
                needs(op.index.is_some(), "index").and(needs(op.value.is_some(), "value"))?
            }
            "replace" => needs(op.value.is_some(), "value")?,
            "move" => needs(op.source.is_some(), "source")
                .and(needs(op.destination.is_some(), "destination"))?,
            _ => {}
        }
        Ok(op)
    }

    fn apply(&self, doc: &mut Value) -> Result<(), String> {
        let found = select(doc, &self.path);
        match self.kind {
            "add" => {
                let [(pointer, ty)] = found.as_slice() else {
                    return Err(count_error(found.len(), "one element to add to"));
                };
                let (name, value) = (self.name.unwrap_or_default(), self.value_for(ty, self.name));
                let member = Definitions::get().member(ty, name);
                let key = match (member, &self.value) {
                    (Some(m), Some((_, Some(t)))) if m.is_choice() => {
                        format!("{name}{}", upper_first(t))
                    }
                    _ => name.to_string(),
                };
                let Some(Value::Object(target)) = doc.pointer_mut(pointer) else {
                    return Err("the path selects a value that holds no elements".into());
                };
                let repeats = Definitions::get().is_array_member(ty, name);
                match (target.get_mut(&key), repeats) {
                    (Some(Value::Array(items)), _) => items.push(value),
                    (Some(_), _) => return Err(format!("'{key}' has a value already: replace it")),
                    (None, true) => {
                        target.insert(key, Value::Array(vec![value]));
                    }
                    (None, false) => {
                        target.insert(key, value);
                    }
                }
            }
            "insert" => {
                let index = self.index.unwrap_or_default();
                let (list, ty, name) = self.list(doc, &found)?;
                let value = self.value_for(&ty, Some(&name));
                let items = list_at(doc, &list, true)?;
                if index > items.len() {
                    return Err(format!(
                        "index {index} is past the list's {} items",
                        items.len()
                    ));
                }
                items.insert(index, value);
            }
            "delete" => match found.as_slice() {
                [] => {}
                [(pointer, _)] => remove(doc, pointer),
                _ => return Err(count_error(found.len(), "at most one element to delete")),
            },
            "replace" => {
                let [(pointer, ty)] = found.as_slice() else {
                    return Err(count_error(found.len(), "one element to replace"));
                };
                let value = self.value_for(ty, None);
                if let Some(slot) = doc.pointer_mut(pointer) {
                    *slot = value;
                }
            }
            _ => {
                let (source, destination) = (
                    self.source.unwrap_or_default(),
                    self.destination.unwrap_or_default(),
                );
                let (list, _, _) = self.list(doc, &found)?;
                let items = list_at(doc, &list, false)?;
                if source >= items.len() || destination >= items.len() {
                    return Err(format!(
                        "source {source} and destination {destination} must be within the list's {} items",
                        items.len()
                    ));
                }
                let item = items.remove(source);
                items.insert(destination, item);
            }
        }
        Ok(())
    }

    /// The list an insert or move works on: the array that holds the items the path selects,
    /// or (none selected) the element the path's last step names on the one element before it.
    /// Returns the list's pointer, its element type and its name.
    fn list(
        &self,
        doc: &Value,
        found: &[(String, &'static str)],
    ) -> Result<(String, String, String), String> {
        if let Some((first, ty)) = found.first() {
            let parent = parent_of(first);
            if found.iter().any(|(p, _)| parent_of(p) != parent)
                || !matches!(doc.pointer(parent), Some(Value::Array(_)))
            {
                return Err("the path must select the items of one list".into());
            }
            let name = unescape(parent.rsplit('/').next().unwrap_or_default());
            return Ok((parent.to_string(), ty.to_string(), name));
        }
        let Expr::Member(before, name) = &self.path else {
            return Err("the path selects nothing, and does not end in an element's name".into());
        };
        let owners = select(doc, before);
        let [(owner, owner_ty)] = owners.as_slice() else {
            return Err(count_error(owners.len(), "one element to hold the list"));
        };
        let ty = Definitions::get()
            .member(owner_ty, name)
            .map(|m| m.type_name().to_string())
            .unwrap_or_default();
        Ok((format!("{owner}/{}", escape(name)), ty, name.clone()))
    }

    /// The operation's value, shaped as an element of type `ty`'s member `name` (or of type
    /// `ty` itself when `name` is none): parts that repeat in the type become arrays.
    fn value_for(&self, ty: &str, name: Option<&str>) -> Value {
        let Some((value, _)) = &self.value else {
            return Value::Null;
        };
        let of = match name {
            Some(n) => Definitions::get()
                .member(ty, n)
                .map(|m| m.type_name())
                .unwrap_or(""),
            None => ty,
        };
        shape(value, of)
    }
}

/// A `value` part's value: its `value[x]`, or an element built from its own parts.
fn value_of(part: &Value) -> Result<(Value, Option<&str>), String> {
    if let Some(obj) = part.as_object() {
        for (k, v) in obj {
            if let Some(t) = k.strip_prefix("value")
                && !t.is_empty()
            {
                return Ok((v.clone(), Some(t)));
            }
        }
        if let Some(parts) = obj.get("part").and_then(Value::as_array) {
            return Ok((Value::Object(from_parts(parts)?), None));
        }
    }
    Err("'value' has neither a value[x] nor parts".into())
}

/// An element from parts (`name` and `value[x]`, or parts of their own); a name given twice
/// makes a list.
fn from_parts(parts: &[Value]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for p in parts {
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a part without a name")?;
        let (v, _) = value_of(p)?;
        match out.get_mut(name) {
            Some(Value::Array(items)) => items.push(v),
            Some(one) => *one = Value::Array(vec![one.take(), v]),
            None => {
                out.insert(name.to_string(), v);
            }
        }
    }
    Ok(out)
}

/// `value` as an element of type `ty`: members that repeat in the type made lists.
fn shape(value: &Value, ty: &str) -> Value {
    let (Value::Object(obj), Some(_)) = (value, Definitions::get().structure(ty)) else {
        return value.clone();
    };
    let defs = Definitions::get();
    let out = obj
        .iter()
        .map(|(k, v)| {
            let inner = defs.member(ty, k).map(|m| m.type_name()).unwrap_or("");
            let v = match (defs.is_array_member(ty, k), v) {
                (true, Value::Array(items)) => {
                    Value::Array(items.iter().map(|i| shape(i, inner)).collect())
                }
                (true, one) => Value::Array(vec![shape(one, inner)]),
                (false, one) => shape(one, inner),
            };
            (k.clone(), v)
        })
        .collect();
    Value::Object(out)
}

/// What `path` selects in `doc`, each item as a JSON pointer and its FHIR type.
fn select(doc: &Value, path: &Expr) -> Vec<(String, &'static str)> {
    let items: std::collections::HashMap<*const Value, &'static str> =
        fhirpath::evaluate(path, doc)
            .into_iter()
            .filter_map(|o| match o {
                Out::Item(i) => i.value.map(|v| (v as *const Value, i.ty)),
                Out::Literal(_) => None,
            })
            .collect();
    // each item found again by its address (one lookup a node: a path selecting every item of
    // a long list costs no more than one selecting one), in document order, the walk ending
    // when the last is found
    let mut out = Vec::new();
    let mut stack: Vec<(&Value, String)> = vec![(doc, String::new())];
    while let Some((v, at)) = stack.pop() {
        if out.len() == items.len() {
            break;
        }
        if let Some(ty) = items.get(&(v as *const Value)) {
            out.push((at.clone(), *ty));
        }
        match v {
            Value::Object(m) => stack.extend(
                m.iter()
                    .rev()
                    .map(|(k, c)| (c, format!("{at}/{}", escape(k)))),
            ),
            Value::Array(a) => stack.extend(
                a.iter()
                    .enumerate()
                    .rev()
                    .map(|(i, c)| (c, format!("{at}/{i}"))),
            ),
            _ => {}
        }
    }
    out
}

fn list_at<'d>(
    doc: &'d mut Value,
    pointer: &str,
    create: bool,
) -> Result<&'d mut Vec<Value>, String> {
    if create && doc.pointer(pointer).is_none() {
        let (owner, name) = (
            parent_of(pointer),
            unescape(pointer.rsplit('/').next().unwrap_or_default()),
        );
        if let Some(Value::Object(o)) = doc.pointer_mut(owner) {
            o.insert(name, Value::Array(Vec::new()));
        }
    }
    match doc.pointer_mut(pointer) {
        Some(Value::Array(items)) => Ok(items),
        _ => Err("the path's list is not a list".into()),
    }
}

/// Remove what `pointer` names; a list or an element left empty goes too (FHIR has neither
/// empty arrays nor empty objects), up to the resource itself.
fn remove(doc: &mut Value, pointer: &str) {
    let mut pointer = pointer.to_string();
    while !pointer.is_empty() {
        let (parent, last) = (
            parent_of(&pointer).to_string(),
            pointer.rsplit('/').next().unwrap_or_default(),
        );
        let emptied = match doc.pointer_mut(&parent) {
            Some(Value::Array(items)) => {
                if let Ok(i) = last.parse::<usize>()
                    && i < items.len()
                {
                    items.remove(i);
                }
                items.is_empty()
            }
            Some(Value::Object(o)) => {
                o.remove(&unescape(last));
                o.is_empty()
            }
            _ => false,
        };
        if !emptied {
            return;
        }
        pointer = parent;
    }
}

fn parent_of(pointer: &str) -> &str {
    pointer.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn unescape(key: &str) -> String {
    key.replace("~1", "/").replace("~0", "~")
}

fn upper_first(t: &str) -> String {
    let mut c = t.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn count_error(n: usize, wanted: &str) -> String {
    format!("the path selects {n} elements; it must select {wanted}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(kind: &str, path: &str, more: Value) -> Value {
        let mut parts = vec![
            json!({"name": "type", "valueCode": kind}),
            json!({"name": "path", "valueString": path}),
        ];
        parts.extend(more.as_array().cloned().unwrap_or_default());
        json!({"name": "operation", "part": parts})
    }

    fn patch(ops: Vec<Value>) -> Value {
        json!({"resourceType": "Parameters", "parameter": ops})
    }

    fn patient() -> Value {
        json!({"resourceType": "Patient", "id": "p", "gender": "male",
               "identifier": [{"system": "a", "value": "1"}, {"system": "b", "value": "2"}],
               "name": [{"family": "Ng", "given": ["A"]}]})
    }

    #[test]
    fn the_five_operations_apply() {
        let mut doc = patient();
        let ops = patch(vec![
            op(
                "replace",
                "Patient.gender",
                json!([{"name": "value", "valueCode": "female"}]),
            ),
            op(
                "add",
                "Patient",
                json!([{"name": "name", "valueString": "birthDate"},
                                          {"name": "value", "valueDate": "1970-01-02"}]),
            ),
            op(
                "add",
                "Patient.name[0]",
                json!([{"name": "name", "valueString": "given"},
                                                  {"name": "value", "valueString": "B"}]),
            ),
            op(
                "insert",
                "Patient.identifier",
                json!([{"name": "index", "valueInteger": 0},
                {"name": "value", "valueIdentifier": {"system": "c", "value": "3"}}]),
            ),
            op("delete", "Patient.identifier.where(system='a')", json!([])),
            op(
                "move",
                "Patient.identifier",
                json!([{"name": "source", "valueInteger": 1},
                                                     {"name": "destination", "valueInteger": 0}]),
            ),
            op(
                "add",
                "Patient",
                json!([{"name": "name", "valueString": "telecom"},
                {"name": "value", "part": [{"name": "system", "valueCode": "phone"},
                                           {"name": "value", "valueString": "555"}]}]),
            ),
            op(
                "add",
                "Patient",
                json!([{"name": "name", "valueString": "deceased"},
                                          {"name": "value", "valueBoolean": false}]),
            ),
        ]);
        apply(&mut doc, &ops, 1 << 20).unwrap();
        assert_eq!(
            doc,
            json!({"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1970-01-02",
                   "identifier": [{"system": "b", "value": "2"}, {"system": "c", "value": "3"}],
                   "name": [{"family": "Ng", "given": ["A", "B"]}],
                   "telecom": [{"system": "phone", "value": "555"}],
                   "deceasedBoolean": false})
        );
    }

    #[test]
    fn deleting_the_last_item_removes_the_list_and_nothing_selected_is_no_change() {
        let mut doc = json!({"resourceType": "Patient", "id": "p", "name": [{"family": "Ng"}]});
        let ops = patch(vec![
            op("delete", "Patient.name", json!([])),
            op("delete", "Patient.telecom", json!([])),
            op(
                "add",
                "Patient",
                json!([{"name": "name", "valueString": "contact"},
                {"name": "value", "part": [{"name": "gender", "valueCode": "male"}]}]),
            ),
            op("delete", "Patient.contact.gender", json!([])),
            op(
                "insert",
                "Patient.telecom",
                json!([{"name": "index", "valueInteger": 0},
                {"name": "value", "valueContactPoint": {"system": "email", "value": "a@b"}}]),
            ),
        ]);
        apply(&mut doc, &ops, 1 << 20).unwrap();
        assert_eq!(
            doc,
            json!({"resourceType": "Patient", "id": "p",
                   "telecom": [{"system": "email", "value": "a@b"}]})
        );
    }

    #[test]
    fn bad_operations_are_told_apart_from_ones_that_do_not_apply() {
        let mut doc = patient();
        let bad = |ops| apply(&mut patient(), &patch(ops), 1 << 20).unwrap_err();
        assert!(matches!(
            bad(vec![op("frobnicate", "Patient", json!([]))]),
            PatchError::Malformed(_)
        ));
        assert!(matches!(
            bad(vec![op("add", "Patient", json!([]))]),
            PatchError::Malformed(_)
        ));
        assert!(matches!(
            bad(vec![op("delete", "Patient.(", json!([]))]),
            PatchError::Malformed(_)
        ));
        // two identifiers where one is wanted; a single value added twice
        assert!(matches!(
            bad(vec![op("replace", "Patient.identifier", json!([{"name": "value", "valueString": "x"}]))]),
            PatchError::Failed(m) if m.contains("selects 2")
        ));
        assert!(matches!(
            bad(vec![op("add", "Patient", json!([{"name": "name", "valueString": "gender"},
                                                 {"name": "value", "valueCode": "other"}]))]),
            PatchError::Failed(m) if m.contains("has a value already")
        ));
        let many = patch(
            (0..=MAX_OPERATIONS)
                .map(|_| op("delete", "Patient.x", json!([])))
                .collect(),
        );
        assert!(matches!(
            apply(&mut doc, &many, 1 << 20),
            Err(PatchError::Malformed(_))
        ));
    }

    #[test]
    fn a_result_past_the_limit_is_refused() {
        let ops = patch(vec![op(
            "add",
            "Patient",
            json!([{"name": "name", "valueString": "text"},
            {"name": "value", "valueNarrative": {"status": "generated", "div": "x".repeat(5000)}}]),
        )]);
        let err = apply(&mut patient(), &ops, 4096).unwrap_err();
        assert!(matches!(err, PatchError::TooLarge(_)), "{err:?}");
    }
}
