//! Running parsed entries against the store: a transaction in one database transaction, a batch
//! one entry at a time, and the response entries the spec describes for each.

use super::{Action, Entry, Target};
use crate::api::context::{RequestContext, Return};
use crate::api::error::ApiError;
use crate::auth::{Grant, Interaction};
use crate::fhir::bundle::bundle;
use crate::fhir::patch::Patch;
use crate::fhir::resource::instant;
use crate::fhir::{FhirId, operation_outcome};
use crate::ingest::Writer;
use crate::ingest::rest::{self, single_match};
use crate::store::{DbConnection, Store, StoreError, Tx, Written, versions, write};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// Where an entry's write lands: the id it names or that its condition resolved to, and
/// whether an `If-None-Exist` create matched an existing resource (then nothing is written).
#[derive(Debug, Clone)]
struct Resolved {
    id: FhirId,
    existing: bool,
}

/// All entries in one database transaction: any failure rolls every entry back.
pub(super) fn run_transaction(
    store: &Store,
    mut entries: Vec<Entry>,
    base: &str,
    ctx: &RequestContext,
    wctx: &Writer,
) -> Result<Value, ApiError> {
    check_no_duplicates(&entries)?;
    let results = store.write(|tx| {
        // 1. Resolve every target and what each fullUrl will be called, before any write.
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut targets = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let resolved =
                resolve(tx, &e.action, base, &wctx.grant).map_err(|err| at_entry(err, i))?;
            if let (Some(url), Some(r)) = (&e.full_url, &resolved) {
                ids.insert(url.clone(), format!("{}/{}", e.action.rtype(), r.id));
            }
            targets.push(resolved);
        }
        for (i, e) in entries.iter().enumerate() {
            unresolved_local_reference(&e.action, &ids).map_err(|err| at_entry(err, i))?;
        }
        // 2. Execute in the spec's order (DELETE, POST, PUT, GET); answer in the request's.
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|&i| entries[i].order());
        let fresh: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| is_fresh_create(&entries[i].action, &targets[i]))
            .collect();
        let mut results: Vec<Option<Value>> = vec![None; entries.len()];
        for i in order {
            if !is_fresh_create(&entries[i].action, &targets[i]) {
                let out = execute(tx, &mut entries[i].action, targets[i].as_ref(), &ids, wctx)
                    .map(|w| entry_response(&w, &entries[i].action, base, ctx))
                    .map_err(|err| at_entry(err, i))?;
                results[i] = Some(out);
            } else if results[i].is_none() {
                // the first new resource: write all of them together, in a few statements
                let creates = fresh
                    .iter()
                    .map(|&j| {
                        let id = targets[j].as_ref().map(|r| r.id.clone());
                        let rtype = entries[j].action.rtype().to_string();
                        let resource = take_resource(&mut entries[j].action, &ids);
                        (rtype, id.expect("a create has a target"), resource)
                    })
                    .collect();
                let written = write::create_many(tx, creates, &wctx.ctx)?;
                for (&j, w) in fresh.iter().zip(&written) {
                    results[j] = Some(entry_response(w, &entries[j].action, base, ctx));
                }
            }
        }
        Ok::<_, ApiError>(results)
    })?;
    let entries = results.into_iter().flatten().collect();
    Ok(bundle("transaction-response", None, vec![], entries))
}

/// Each entry alone: one failing entry is reported in its place and the others still run.
pub(super) fn run_batch(
    store: &Store,
    entries: Vec<Result<Entry, ApiError>>,
    base: &str,
    ctx: &RequestContext,
    wctx: &Writer,
) -> Value {
    let out = entries
        .into_iter()
        .map(|entry| {
            let result = entry.and_then(|mut entry| {
                unresolved_local_reference(&entry.action, &HashMap::new())?;
                if let Action::Read { rtype, id, version } = &entry.action {
                    // a read needs no writer's turn: it runs on a reader, beside the writes
                    let w = store.read(|c| read(c, rtype, id, *version))
                        .map_err(ApiError::from)?;
                    wctx.grant
                        .check(Interaction::Read, rtype, id, || w.version.json())
                        .map_err(|_| ApiError::unseen(rtype, id))?;
                    return Ok(entry_response(&w, &entry.action, base, ctx));
                }
                store.write(|tx| {
                    let target = resolve(tx, &entry.action, base, &wctx.grant)?;
                    let w =
                        execute(tx, &mut entry.action, target.as_ref(), &HashMap::new(), wctx)?;
                    Ok(entry_response(&w, &entry.action, base, ctx))
                })
            });
            result.unwrap_or_else(|e| {
                json!({ "response": { "status": e.status_line(), "outcome": operation_outcome(&e.issues) } })
            })
        })
        .collect();
    bundle("batch-response", None, vec![], out)
}

fn at_entry(err: ApiError, i: usize) -> ApiError {
    err.in_context(&format!("Bundle.entry[{i}]"))
}

fn is_fresh_create(action: &Action, target: &Option<Resolved>) -> bool {
    matches!(action, Action::Create { .. }) && target.as_ref().is_some_and(|r| !r.existing)
}

/// The id an entry writes to. Reads resolve nothing; a conditional update or delete that
/// matches nothing gets a fresh id (create, or delete of nothing).
fn resolve(
    tx: &mut Tx,
    action: &Action,
    base: &str,
    grant: &Grant,
) -> Result<Option<Resolved>, ApiError> {
    let resolved = match action {
        Action::Create {
            rtype,
            if_none_exist,
            ..
        } => {
            let existing = match if_none_exist {
                Some(q) => single_match(tx, rtype, q, base, grant)?,
                None => None,
            };
            Resolved {
                existing: existing.is_some(),
                id: existing.unwrap_or_else(FhirId::generate),
            }
        }
        Action::Patch {
            rtype,
            target: Target::Condition(q),
            ..
        } => {
            // a patch needs something to patch: a condition that matches nothing is 404
            let id = single_match(tx, rtype, q, base, grant)?.ok_or_else(|| {
                ApiError::not_found(format!("no {rtype} matches '{q}' to be patched"))
            })?;
            Resolved { id, existing: true }
        }
        Action::Update { rtype, target, .. }
        | Action::Delete { rtype, target, .. }
        | Action::Patch { rtype, target, .. } => {
            let id = match target {
                Target::Id(id) => id.clone(),
                Target::Condition(q) => {
                    single_match(tx, rtype, q, base, grant)?.unwrap_or_else(FhirId::generate)
                }
            };
            Resolved {
                id,
                existing: false,
            }
        }
        Action::Read { .. } => return Ok(None),
    };
    Ok(Some(resolved))
}

fn check_no_duplicates(entries: &[Entry]) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        let (Action::Update {
            rtype,
            target: Target::Id(id),
            ..
        }
        | Action::Delete {
            rtype,
            target: Target::Id(id),
            ..
        }
        | Action::Patch {
            rtype,
            target: Target::Id(id),
            ..
        }) = &e.action
        else {
            continue;
        };
        let key = format!("{rtype}/{id}");
        if !seen.insert(key.clone()) {
            return Err(ApiError::bad_request(format!(
                "Bundle.entry[{i}]: {key} is changed by more than one entry of this transaction"
            )));
        }
    }
    Ok(())
}

/// Refuse a resource that refers to a Bundle-local `urn:uuid:` or `urn:oid:` that no entry of
/// the Bundle has as its fullUrl (in a batch, where entries stand alone, any such reference):
/// stored as it is, it would point at nothing.
fn unresolved_local_reference(
    action: &Action,
    ids: &HashMap<String, String>,
) -> Result<(), ApiError> {
    let (Action::Create { prepared, .. } | Action::Update { prepared, .. }) = action else {
        return Ok(());
    };
    let mut stack = vec![&prepared.resource];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("reference")
                    && (r.starts_with("urn:uuid:") || r.starts_with("urn:oid:"))
                    && !ids.contains_key(r)
                {
                    return Err(ApiError::bad_request(format!(
                        "reference '{r}' names no fullUrl of this Bundle's entries"
                    )));
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    Ok(())
}

/// Move the resource out of a create or update entry (it is written once), with its
/// references to Bundle-local fullUrls rewritten to the server's `Type/id`.
fn take_resource(action: &mut Action, ids: &HashMap<String, String>) -> Value {
    let mut resource = match action {
        Action::Create { prepared, .. } | Action::Update { prepared, .. } => {
            std::mem::take(&mut prepared.resource)
        }
        _ => Value::Null,
    };
    if !ids.is_empty() {
        rewrite_references(&mut resource, ids);
    }
    resource
}

/// Replace every `reference` that names a Bundle-local fullUrl with the server's `Type/id`.
fn rewrite_references(value: &mut Value, ids: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Value::String(s) if k == "reference" => {
                        if let Some(new) = ids.get(s.as_str()) {
                            *s = new.clone();
                        }
                    }
                    other => rewrite_references(other, ids),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_references(i, ids)),
        _ => {}
    }
}

/// A patch's references to Bundle-local fullUrls, rewritten as a resource's are: in the
/// values it adds (`{"reference": "urn:uuid:..."}`) and, for a JSON Patch, a string it sets at
/// a path ending in `/reference`. One that names no entry is refused, as in a resource.
fn rewrite_patch_references(
    patch: &mut Patch,
    ids: &HashMap<String, String>,
) -> Result<(), ApiError> {
    let is_json_patch = matches!(patch, Patch::Json(_));
    let (Patch::Json(doc) | Patch::Merge(doc) | Patch::FhirPath(doc) | Patch::Meta(doc, _)) = patch;
    rewrite_references(doc, ids);
    let mut references: Vec<&mut String> = Vec::new();
    if is_json_patch && let Value::Array(ops) = doc {
        for op in ops.iter_mut() {
            let sets_reference = op
                .get("path")
                .and_then(Value::as_str)
                .is_some_and(|p| p.ends_with("/reference"));
            if let (true, Some(Value::String(s))) = (sets_reference, op.get_mut("value")) {
                references.push(s);
            }
        }
    }
    for s in references {
        if let Some(new) = ids.get(s.as_str()) {
            *s = new.clone();
        } else if s.starts_with("urn:uuid:") || s.starts_with("urn:oid:") {
            return Err(ApiError::bad_request(format!(
                "the patch sets reference '{s}', which names no fullUrl of this Bundle's entries"
            )));
        }
    }
    // what `rewrite_references` left is no entry's
    let mut stack = vec![&*doc];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("reference")
                    && (r.starts_with("urn:uuid:") || r.starts_with("urn:oid:"))
                {
                    return Err(ApiError::bad_request(format!(
                        "the patch adds reference '{r}', which names no fullUrl of this \
                         Bundle's entries"
                    )));
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    Ok(())
}

/// Run one entry (other than a transaction's new resources, written by `create_many`).
fn execute(
    tx: &mut Tx,
    action: &mut Action,
    target: Option<&Resolved>,
    ids: &HashMap<String, String>,
    wctx: &Writer,
) -> Result<Written, ApiError> {
    if let Action::Read { rtype, id, version } = action {
        let read = read(tx.conn, rtype, id, *version)?;
        wctx.grant
            .check(Interaction::Read, rtype, id, || read.version.json())
            .map_err(|_| ApiError::unseen(rtype, id))?;
        return Ok(read);
    }
    let Some(Resolved { id, existing }) = target else {
        return Err(ApiError::bad_request("entry could not be resolved"));
    };
    let rtype = action.rtype().to_string();
    match action {
        Action::Create { .. } if *existing => {
            let version = versions::current(tx.conn, &rtype, id.as_str())?
                .ok_or_else(|| ApiError::not_found(id.to_string()))?;
            wctx.grant
                .check(Interaction::Read, &rtype, id.as_str(), || version.json())?;
            Ok(Written {
                version,
                created: false,
                noop: true,
            })
        }
        Action::Create { .. } => {
            let resource = take_resource(action, ids);
            Ok(rest::create_with_id(tx, &rtype, id, resource, wctx)?)
        }
        Action::Update { if_match, .. } => {
            let if_match = *if_match;
            let mut resource = take_resource(action, ids);
            resource["id"] = json!(id.as_str()); // a conditional update names the id for the client
            Ok(rest::update(tx, &rtype, id, resource, if_match, wctx)?)
        }
        Action::Delete { if_match, .. } => Ok(rest::delete(tx, &rtype, id, *if_match, wctx)?),
        Action::Patch { patch, request, .. } => {
            rewrite_patch_references(patch, ids)?;
            Ok(rest::patch(tx, &rtype, id, patch, request, wctx)?.0)
        }
        Action::Read { .. } => unreachable!("handled above"),
    }
}

/// A read or vread entry, as the version read (a deleted one is 410).
fn read(
    conn: &mut DbConnection,
    rtype: &str,
    id: &str,
    version: Option<i64>,
) -> Result<Written, StoreError> {
    let v = match version {
        Some(vid) => versions::version(conn, rtype, id, vid)?,
        None => versions::current(conn, rtype, id)?,
    }
    .ok_or_else(|| StoreError::NotFound {
        resource_type: rtype.into(),
        id: id.into(),
    })?;
    if v.deleted {
        return Err(v.gone());
    }
    Ok(Written {
        version: v,
        created: false,
        noop: true,
    })
}

/// The response entry of one request entry, as the spec's transaction-response describes it.
fn entry_response(w: &Written, action: &Action, base: &str, ctx: &RequestContext) -> Value {
    let v = &w.version;
    let is_read = matches!(action, Action::Read { .. });
    let is_delete = matches!(action, Action::Delete { .. });
    let status = match action {
        Action::Delete { .. } => "204 No Content",
        _ if w.created => "201 Created",
        _ => "200 OK",
    };
    let mut response = json!({ "status": status });
    if !v.deleted || !w.noop {
        response["etag"] = json!(format!("W/\"{}\"", v.version_id));
        response["lastModified"] = json!(instant(v.last_updated));
    }
    if !is_delete && !is_read {
        response["location"] = json!(format!(
            "{}/{}/_history/{}",
            v.resource_type, v.id, v.version_id
        ));
    }
    let mut entry = json!({ "response": response });
    if !is_delete {
        entry["fullUrl"] = json!(format!("{base}/{}/{}", v.resource_type, v.id));
        // Writes answer with the response parts only, unless the client asks for resources.
        if is_read || ctx.prefer_return == Some(Return::Representation) {
            entry["resource"] = v.json();
        }
    }
    entry
}
