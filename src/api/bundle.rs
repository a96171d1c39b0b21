//! Batch and transaction Bundles (`POST [base]`).
//!
//! A transaction runs in one database transaction: entries are processed DELETE, POST, PUT,
//! GET (the spec's order), `urn:uuid:` fullUrls get their server ids and every reference to them
//! is rewritten, and any failing entry rolls the whole Bundle back. A batch runs each entry on
//! its own and reports each entry's outcome.

use super::AppState;
use super::context::{RequestContext, Return};
use super::crud::{audited, resource_body};
use super::error::ApiError;
use super::interaction::{
    self, Prepared, check_type, parse_etag, parse_id, prepare, resolve_condition,
};
use super::render;
use crate::fhir::bundle::bundle;
use crate::fhir::resource::instant;
use crate::fhir::{FhirId, operation_outcome};
use crate::store::{Store, StoreError, Tx, WriteContext, Written, versions};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// What one entry asks for, parsed and validated before any write.
#[derive(Debug, Clone)]
enum Action {
    Create {
        rtype: String,
        prepared: Prepared,
        if_none_exist: Option<String>,
    },
    Update {
        rtype: String,
        target: Target,
        prepared: Prepared,
        if_match: Option<i64>,
    },
    Delete {
        rtype: String,
        target: Target,
        if_match: Option<i64>,
    },
    Read {
        rtype: String,
        id: String,
        version: Option<i64>,
    },
}

/// The resource an update or delete names: by id, or by a condition (`Patient?identifier=...`).
#[derive(Debug, Clone)]
enum Target {
    Id(FhirId),
    Condition(String),
}

#[derive(Debug, Clone)]
struct Entry {
    full_url: Option<String>,
    action: Action,
}

impl Entry {
    /// The spec's processing order within a transaction.
    fn order(&self) -> u8 {
        match self.action {
            Action::Delete { .. } => 0,
            Action::Create { .. } => 1,
            Action::Update { .. } => 2,
            Action::Read { .. } => 3,
        }
    }
}

pub async fn process(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let body = resource_body(&state, &req, payload).await?;
    if body.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(ApiError::bad_request(
            "POST to the base URL takes a Bundle of type batch or transaction",
        ));
    }
    let kind = body
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let is_transaction = match kind.as_str() {
        "transaction" => true,
        "batch" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "Bundle.type must be batch or transaction, not '{other}'"
            )));
        }
    };
    let store = state.store.clone();
    let base = state.base_url.clone();
    let c = ctx.clone();
    let result = web::block(move || {
        if is_transaction {
            run_transaction(&store, &body, &base, &c)
        } else {
            Ok(run_batch(&store, &body, &base, &c))
        }
    })
    .await?;
    let response = audited(&state, &ctx, &kind, None, None, result)?;
    render::fhir(StatusCode::OK, &response, &ctx)
}

fn entries_of(bundle: &Value) -> Result<&Vec<Value>, ApiError> {
    static EMPTY: Vec<Value> = Vec::new();
    match bundle.get("entry") {
        None => Ok(&EMPTY),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(ApiError::bad_request("Bundle.entry must be an array")),
    }
}

/// Parse and validate one entry (no database access).
fn parse_entry(raw: &Value, lenient: bool) -> Result<Entry, ApiError> {
    let request = raw.get("request").ok_or_else(|| {
        ApiError::bad_request("entry.request is required in a batch or transaction")
    })?;
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim_start_matches('/');
    if url.is_empty() {
        return Err(ApiError::bad_request("entry.request.url is required"));
    }
    let if_match = request
        .get("ifMatch")
        .and_then(Value::as_str)
        .map(parse_etag)
        .transpose()?;
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (url, None),
    };
    let parts: Vec<&str> = path.split('/').collect();
    let rtype = parts[0].to_string();
    check_type(&rtype)?;
    let target = || -> Result<Target, ApiError> {
        match (parts.as_slice(), &query) {
            ([_, id], None) => Ok(Target::Id(parse_id(id)?)),
            ([_], Some(q)) => Ok(Target::Condition(q.clone())),
            _ => Err(ApiError::bad_request(format!(
                "'{url}' is not [type]/[id] or [type]?[condition]"
            ))),
        }
    };
    let resource = || -> Result<Prepared, ApiError> {
        let r = raw
            .get("resource")
            .cloned()
            .ok_or_else(|| ApiError::bad_request(format!("{method} {url} needs entry.resource")))?;
        prepare(r, &rtype, lenient)
    };
    let action = match method {
        "POST" if parts.len() == 1 => Action::Create {
            prepared: resource()?,
            if_none_exist: request
                .get("ifNoneExist")
                .and_then(Value::as_str)
                .map(str::to_string),
            rtype,
        },
        "PUT" => Action::Update {
            target: target()?,
            prepared: resource()?,
            if_match,
            rtype,
        },
        "DELETE" => Action::Delete {
            target: target()?,
            if_match,
            rtype,
        },
        "GET" => match parts.as_slice() {
            [_, id] if query.is_none() => Action::Read {
                id: id.to_string(),
                version: None,
                rtype,
            },
            [_, id, "_history", v] => Action::Read {
                id: id.to_string(),
                version: Some(
                    v.parse()
                        .map_err(|_| ApiError::bad_request(format!("bad version in '{url}'")))?,
                ),
                rtype,
            },
            _ => {
                return Err(ApiError::bad_request(format!(
                    "GET '{url}' in a Bundle: only read and vread are supported"
                )));
            }
        },
        "PATCH" => {
            return Err(ApiError::bad_request(
                "PATCH inside a Bundle is not supported; send it as its own request",
            ));
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "'{other} {url}' is not a supported Bundle request"
            )));
        }
    };
    Ok(Entry {
        full_url: raw
            .get("fullUrl")
            .and_then(Value::as_str)
            .map(str::to_string),
        action,
    })
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

fn run_transaction(
    store: &Store,
    bundle: &Value,
    base: &str,
    ctx: &RequestContext,
) -> Result<Value, ApiError> {
    let raw = entries_of(bundle)?;
    let mut entries = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        entries.push(
            parse_entry(r, ctx.lenient).map_err(|e| e.in_context(&format!("Bundle.entry[{i}]")))?,
        );
    }
    check_no_duplicates(&entries)?;
    let wctx = ctx.write_context();
    let results = store.write(|tx| {
        // 1. Resolve what each fullUrl will be called, before anything refers to it.
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut targets: Vec<Option<(FhirId, bool)>> = vec![None; entries.len()];
        for (i, e) in entries.iter().enumerate() {
            let at = |err: ApiError| err.in_context(&format!("Bundle.entry[{i}]"));
            let resolved = match &e.action {
                Action::Create {
                    rtype,
                    if_none_exist,
                    ..
                } => {
                    let existing = match if_none_exist {
                        Some(q) => single_match(tx, rtype, q).map_err(at)?,
                        None => None,
                    };
                    Some((
                        existing.clone().unwrap_or_else(FhirId::generate),
                        existing.is_some(),
                    ))
                }
                Action::Update { rtype, target, .. } | Action::Delete { rtype, target, .. } => {
                    match target {
                        Target::Id(id) => Some((id.clone(), false)),
                        Target::Condition(q) => {
                            let found = single_match(tx, rtype, q).map_err(at)?;
                            let is_delete = matches!(e.action, Action::Delete { .. });
                            Some((found.unwrap_or_else(FhirId::generate), is_delete))
                        }
                    }
                }
                Action::Read { .. } => None,
            };
            if let (Some(url), Some((id, _))) = (&e.full_url, &resolved) {
                let rtype = match &e.action {
                    Action::Create { rtype, .. }
                    | Action::Update { rtype, .. }
                    | Action::Delete { rtype, .. } => rtype,
                    Action::Read { rtype, .. } => rtype,
                };
                ids.insert(url.clone(), format!("{rtype}/{id}"));
            }
            targets[i] = resolved;
        }
        // 2. Execute in the spec's order; answer in the request's order.
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|&i| entries[i].order());
        let mut results: Vec<Option<Value>> = vec![None; entries.len()];
        for i in order {
            let at = |err: ApiError| err.in_context(&format!("Bundle.entry[{i}]"));
            let out = execute(
                tx,
                &entries[i].action,
                targets[i].as_ref(),
                &ids,
                &wctx,
                base,
                ctx,
            )
            .map_err(at)?;
            results[i] = Some(out);
        }
        Ok::<_, ApiError>(results)
    })?;
    let entries = results.into_iter().flatten().collect();
    Ok(bundle_response("transaction-response", entries))
}

fn run_batch(store: &Store, bundle: &Value, base: &str, ctx: &RequestContext) -> Value {
    let wctx = ctx.write_context();
    let raw = match entries_of(bundle) {
        Ok(r) => r,
        Err(e) => return operation_outcome(&e.issues),
    };
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let result = parse_entry(r, ctx.lenient).and_then(|entry| {
            store.write(|tx| {
                let target = match &entry.action {
                    Action::Create {
                        rtype,
                        if_none_exist,
                        ..
                    } => {
                        let existing = match if_none_exist {
                            Some(q) => single_match(tx, rtype, q)?,
                            None => None,
                        };
                        Some((
                            existing.clone().unwrap_or_else(FhirId::generate),
                            existing.is_some(),
                        ))
                    }
                    Action::Update { rtype, target, .. } | Action::Delete { rtype, target, .. } => {
                        Some(match target {
                            Target::Id(id) => (id.clone(), false),
                            Target::Condition(q) => (
                                single_match(tx, rtype, q)?.unwrap_or_else(FhirId::generate),
                                false,
                            ),
                        })
                    }
                    Action::Read { .. } => None,
                };
                execute(
                    tx,
                    &entry.action,
                    target.as_ref(),
                    &HashMap::new(),
                    &wctx,
                    base,
                    ctx,
                )
            })
        });
        out.push(result.unwrap_or_else(|e| {
            json!({ "response": { "status": e.status_line(), "outcome": operation_outcome(&e.issues) } })
        }));
    }
    bundle_response("batch-response", out)
}

fn bundle_response(kind: &str, entries: Vec<Value>) -> Value {
    bundle(kind, None, vec![], entries)
}

/// The one resource a condition matches: none is `None`, several is 412.
fn single_match(tx: &mut Tx, rtype: &str, query: &str) -> Result<Option<FhirId>, ApiError> {
    let found = resolve_condition(tx, rtype, query)?;
    match found.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(parse_id(id)?)),
        _ => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            crate::fhir::Issue::error(
                "duplicate",
                format!("'{rtype}?{query}' matches {} resources", found.len()),
            ),
        )),
    }
}

fn check_no_duplicates(entries: &[Entry]) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        let key = match &e.action {
            Action::Update {
                rtype,
                target: Target::Id(id),
                ..
            }
            | Action::Delete {
                rtype,
                target: Target::Id(id),
                ..
            } => {
                format!("{rtype}/{id}")
            }
            _ => continue,
        };
        if !seen.insert(key.clone()) {
            return Err(ApiError::bad_request(format!(
                "Bundle.entry[{i}]: {key} is changed by more than one entry of this transaction"
            )));
        }
    }
    Ok(())
}

fn execute(
    tx: &mut Tx,
    action: &Action,
    target: Option<&(FhirId, bool)>,
    ids: &HashMap<String, String>,
    wctx: &WriteContext,
    base: &str,
    ctx: &RequestContext,
) -> Result<Value, ApiError> {
    let with_refs = |p: &Prepared| {
        let mut resource = p.resource.clone();
        if !ids.is_empty() {
            rewrite_references(&mut resource, ids);
        }
        resource
    };
    let written = match (action, target) {
        (
            Action::Create {
                rtype, prepared, ..
            },
            Some((id, existed)),
        ) => {
            if *existed {
                let version = versions::current(tx.conn, rtype, id.as_str())?
                    .ok_or_else(|| ApiError::not_found(id.to_string()))?;
                Written {
                    version,
                    created: false,
                    noop: true,
                }
            } else {
                interaction::create_with_id(tx, rtype, id, with_refs(prepared), wctx)?
            }
        }
        (
            Action::Update {
                rtype,
                prepared,
                if_match,
                ..
            },
            Some((id, _)),
        ) => {
            let mut resource = with_refs(prepared);
            resource["id"] = json!(id.as_str()); // a conditional update names the id for the client
            interaction::update(tx, rtype, id, resource, *if_match, wctx)?
        }
        (
            Action::Delete {
                rtype, if_match, ..
            },
            Some((id, _)),
        ) => interaction::delete(tx, rtype, id, *if_match, wctx)?,
        (Action::Read { rtype, id, version }, _) => {
            return read_entry(tx, rtype, id, *version, base);
        }
        _ => return Err(ApiError::bad_request("entry could not be resolved")),
    };
    Ok(write_entry(&written, action, base, ctx))
}

fn read_entry(
    tx: &mut Tx,
    rtype: &str,
    id: &str,
    version: Option<i64>,
    base: &str,
) -> Result<Value, ApiError> {
    let v = match version {
        Some(vid) => versions::version(tx.conn, rtype, id, vid)?,
        None => versions::current(tx.conn, rtype, id)?,
    }
    .ok_or_else(|| StoreError::NotFound {
        resource_type: rtype.into(),
        id: id.into(),
    })?;
    if v.deleted {
        return Err(StoreError::Gone {
            resource_type: rtype.into(),
            id: id.into(),
            version_id: v.version_id,
            last_updated: v.last_updated,
        }
        .into());
    }
    Ok(json!({
        "fullUrl": format!("{base}/{rtype}/{id}"),
        "resource": v.json(),
        "response": { "status": "200 OK", "etag": format!("W/\"{}\"", v.version_id), "lastModified": instant(v.last_updated) }
    }))
}

fn write_entry(w: &Written, action: &Action, base: &str, ctx: &RequestContext) -> Value {
    let v = &w.version;
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
    if !matches!(action, Action::Delete { .. }) {
        response["location"] = json!(format!(
            "{}/{}/_history/{}",
            v.resource_type, v.id, v.version_id
        ));
    }
    let mut entry = json!({ "response": response });
    if !matches!(action, Action::Delete { .. }) {
        entry["fullUrl"] = json!(format!("{base}/{}/{}", v.resource_type, v.id));
        // Bundles answer with the response parts only, unless the client asks for resources.
        if ctx.prefer_return == Some(Return::Representation) {
            entry["resource"] = v.json();
        }
    }
    entry
}
