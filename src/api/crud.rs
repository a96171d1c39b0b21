//! Handlers of the instance and type interactions: read, vread, create, update, patch, delete.
//! Each parses the request, calls one interaction in a store transaction, and renders.

use super::AppState;
use super::body::{parse_resource, read_limited};
use super::context::{RequestContext, body_format};
use super::error::ApiError;
use super::path::{IfMatch, Instance, TypeName, parse_etag};
use super::render;
use crate::auth::{Interaction, Reach};
use crate::fhir::Issue;
use crate::fhir::patch::{self, Patch};
use crate::ingest::{Accepted, Writer, rest};
use crate::store::{Store, StoreError, versions};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub async fn read(
    state: web::Data<AppState>,
    Instance { rtype, id }: Instance,
    req: HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let id = id.to_string();
    let store = state.store.clone();
    let (rt, i) = (rtype.clone(), id.clone());
    let confined = !matches!(ctx.grant.reach(Interaction::Read, &rtype)?, Reach::All);
    let version = match web::block(move || store.current(&rt, &i)).await? {
        Err(StoreError::Gone { .. }) if confined => return Err(ApiError::unseen(&rtype, &id)),
        found => found?,
    };
    ctx.grant
        .check(Interaction::Read, &rtype, &id, || version.json())
        .map_err(|_| ApiError::unseen(&rtype, &id))?;
    if header(&req, "if-none-match").is_some_and(|t| parse_etag(t).ok() == Some(version.version_id))
    {
        return Ok(HttpResponse::NotModified()
            .insert_header(("ETag", render::etag(version.version_id)))
            .finish());
    }
    let ctx = RequestContext {
        prefer_return: None, // Prefer: return shapes write responses, not reads
        ..ctx
    };
    match shaped(&req, &version)? {
        Some(part) => render::version(StatusCode::OK, &part, &ctx, None, &[]),
        None => render::version(StatusCode::OK, &version, &ctx, None, &[]),
    }
}

/// The version as `_summary` or `_elements` in the query shape it (tagged SUBSETTED), when
/// they are there.
fn shaped(
    req: &HttpRequest,
    version: &versions::Version,
) -> Result<Option<versions::Version>, ApiError> {
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    if !params
        .iter()
        .any(|(k, _)| k == "_summary" || k == "_elements")
    {
        return Ok(None);
    }
    let mut json = version.json();
    crate::fhir::subset::apply_params(&mut json, &params).map_err(ApiError::bad_request)?;
    Ok(Some(versions::Version {
        content: json.to_string().into(),
        ..version.clone()
    }))
}

pub async fn vread(
    state: web::Data<AppState>,
    Instance { rtype, id }: Instance,
    vid: web::Path<(String, String, String)>,
    req: HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let (id, vid) = (id.to_string(), vid.into_inner().2);
    let vid: i64 = vid
        .parse()
        .map_err(|_| ApiError::bad_request(format!("version id '{vid}' is not a number")))?;
    let store = state.store.clone();
    let (rt, i) = (rtype.clone(), id.clone());
    let confined = !matches!(ctx.grant.reach(Interaction::Read, &rtype)?, Reach::All);
    let found = web::block(move || store.read(|c| versions::version(c, &rt, &i, vid))).await??;
    let version =
        found.ok_or_else(|| ApiError::not_found(format!("{rtype}/{id} has no version {vid}")))?;
    if version.deleted {
        return Err(match confined {
            true => ApiError::unseen(&rtype, &id),
            false => version.gone().into(),
        });
    }
    ctx.grant
        .check(Interaction::Read, &rtype, &id, || version.json())
        .map_err(|_| ApiError::unseen(&rtype, &id))?;
    let ctx = RequestContext {
        prefer_return: None,
        ..ctx
    };
    match shaped(&req, &version)? {
        Some(part) => render::version(StatusCode::OK, &part, &ctx, None, &[]),
        None => render::version(StatusCode::OK, &version, &ctx, None, &[]),
    }
}

/// Read and parse the body as a resource, honouring Content-Type and the size limit.
pub async fn resource_body(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Value, ApiError> {
    let format = body_format(req)?;
    let bytes = read_limited(req, payload, state.max_body_bytes).await?;
    parse_resource(&bytes, format)
}

/// The patch a PATCH request's body holds, by its Content-Type: `application/json-patch+json`
/// (JSON Patch), `application/merge-patch+json` (JSON Merge Patch), or FHIR JSON
/// (`application/fhir+json`, `application/json`): a Parameters resource is a FHIRPath Patch,
/// an array a JSON Patch, any other object a partial resource merged in (what `fhirpy` sends).
pub async fn patch_body(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Patch, ApiError> {
    let ct = header(req, "content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let form = match ct.as_str() {
        "application/json-patch+json" => "json-patch",
        "application/merge-patch+json" => "merge",
        "application/fhir+json" | "application/json" | "application/json+fhir" => "fhir",
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Issue::error(
                    "not-supported",
                    format!(
                        "PATCH takes application/json-patch+json (JSON Patch), \
                         application/merge-patch+json (JSON Merge Patch) or application/fhir+json \
                         (FHIRPath Patch, a Parameters resource), not '{ct}'"
                    ),
                ),
            ));
        }
    };
    let bytes = read_limited(req, payload, state.max_body_bytes).await?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Issue::error("structure", format!("invalid JSON: {e}")),
        )
    })?;
    Ok(match form {
        "json-patch" => Patch::Json(body),
        "merge" => Patch::Merge(body),
        _ if body.is_array() => Patch::Json(body),
        _ if patch::fhirpath::is_fhirpath_patch(&body) => Patch::FhirPath(body),
        _ => Patch::Merge(body),
    })
}

pub async fn create(
    state: web::Data<AppState>,
    TypeName(rtype): TypeName,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let body = resource_body(&state, &req, payload).await?;
    let condition = create_condition(&req)?;
    let (base, lenient) = (state.base_url.clone(), ctx.lenient);
    let target = Some((rtype.clone(), String::new()));
    let (written, warnings) = write(&state, &ctx, "create", target, move |store, w| {
        let Accepted { resource, warnings } = w.accept(body, &rtype, lenient)?;
        let cond = condition.as_deref();
        let written = store.write(|tx| rest::create(tx, &rtype, resource, cond, &base, w))?;
        Ok((written, warnings))
    })
    .await?;
    let status = match written.noop {
        true => StatusCode::OK,
        false => StatusCode::CREATED,
    };
    let location = Some(state.base_url.as_str());
    render::version(status, &written.version, &ctx, location, &warnings)
}

/// A create's condition: `If-None-Exist`, or a search in the URL's query (`POST
/// [type]?identifier=...`, as some clients send a conditional create), never ignored. The
/// parameters that shape the answer (`_format`, `_pretty`) are not a condition.
fn create_condition(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let params: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let search: Vec<_> = params
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "_format" | "_pretty"))
        .collect();
    let in_url = match search.is_empty() {
        true => None,
        false => Some(
            serde_urlencoded::to_string(&search)
                .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?,
        ),
    };
    match (header(req, "if-none-exist"), in_url) {
        (Some(h), Some(q)) => {
            let same = serde_urlencoded::from_str::<Vec<(String, String)>>(h).ok()
                == serde_urlencoded::from_str::<Vec<(String, String)>>(&q).ok();
            match same {
                true => Ok(Some(q)),
                false => Err(ApiError::bad_request(
                    "a create with both If-None-Exist and a search in the URL: the two differ; send one",
                )),
            }
        }
        (Some(h), None) => Ok(Some(h.to_string())),
        (None, q) => Ok(q),
    }
}

pub async fn update(
    state: web::Data<AppState>,
    Instance { rtype, id }: Instance,
    IfMatch(expected): IfMatch,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let body = resource_body(&state, &req, payload).await?;
    let lenient = ctx.lenient;
    let target = Some((rtype.clone(), id.to_string()));
    let (written, warnings) = write(&state, &ctx, "update", target, move |store, w| {
        let Accepted { resource, warnings } = w.accept(body, &rtype, lenient)?;
        let written = store.write(|tx| rest::update(tx, &rtype, &id, resource, expected, w))?;
        Ok((written, warnings))
    })
    .await?;
    updated(&state, &written, &ctx, &warnings)
}

/// The answer to an update: 201 with a Location when it created the resource, else 200.
pub fn updated(
    state: &AppState,
    written: &versions::Written,
    ctx: &RequestContext,
    warnings: &[Issue],
) -> Result<HttpResponse, ApiError> {
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = written.created.then_some(state.base_url.as_str());
    render::version(status, &written.version, ctx, location, warnings)
}

pub async fn patch(
    state: web::Data<AppState>,
    Instance { rtype, id }: Instance,
    IfMatch(expected): IfMatch,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let operations = patch_body(&state, &req, payload).await?;
    let request = rest::PatchRequest {
        expected,
        lenient: ctx.lenient,
        max_bytes: state.max_body_bytes,
    };
    let target = Some((rtype.clone(), id.to_string()));
    let (written, warnings) = write(&state, &ctx, "patch", target, move |store, w| {
        Ok(store.write(|tx| rest::patch(tx, &rtype, &id, &operations, &request, w))?)
    })
    .await?;
    render::version(StatusCode::OK, &written.version, &ctx, None, &warnings)
}

pub async fn delete(
    state: web::Data<AppState>,
    Instance { rtype, id }: Instance,
    IfMatch(expected): IfMatch,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let target = Some((rtype.clone(), id.to_string()));
    let (rt, i) = (rtype.clone(), id.clone());
    let written = write(&state, &ctx, "delete", target, move |store, w| {
        Ok(store.write(|tx| rest::delete(tx, &rt, &i, expected, w))?)
    })
    .await?;
    deleted(&written, &rtype, id.as_str(), &ctx)
}

/// The answer to a delete: an OperationOutcome that says what happened, and the ETag of the
/// deletion's version.
pub fn deleted(
    written: &versions::Written,
    rtype: &str,
    id: &str,
    ctx: &RequestContext,
) -> Result<HttpResponse, ApiError> {
    let text = if written.noop {
        format!("{rtype}/{id} was already absent; nothing to delete")
    } else {
        format!(
            "deleted {rtype}/{id} (version {})",
            written.version.version_id
        )
    };
    let outcome = crate::fhir::operation_outcome(&[Issue::information("informational", text)]);
    let mut res = render::fhir(StatusCode::OK, &outcome, ctx)?;
    if !written.noop
        && let Ok(v) = render::etag(written.version.version_id).parse()
    {
        res.headers_mut().insert(actix_web::http::header::ETAG, v);
    }
    Ok(res)
}

/// Run `f` on a blocking thread (the store's calls block) with this request's writer on the
/// ingest path; a refused write is kept in the audit trail, `target` the (type, id) it was
/// about (an empty id: the type only).
pub async fn write<T: Send + 'static>(
    state: &AppState,
    ctx: &RequestContext,
    action: &str,
    target: Option<(String, String)>,
    f: impl FnOnce(&Store, &Writer) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let admitted = state.writes.admit()?;
    let (store, writer) = (state.store.clone(), ctx.writer(&state.ingest));
    let result = web::block(move || {
        let _admitted = admitted; // held until the write is done
        f(&store, &writer)
    })
    .await?;
    // the write's rows (or its refusal's) are its audit record
    if let Some(mark) = &ctx.audited {
        mark.set();
    }
    if let Err(e) = &result {
        let (detail, action) = (e.to_string(), action.to_string());
        let (store, id, actor) = (state.store.clone(), ctx.correlation_id.clone(), ctx.actor());
        // off the request path: the client's answer does not wait for the audit row
        actix_web::rt::task::spawn_blocking(move || {
            let target = target.as_ref().map(|(t, i)| (t.as_str(), i.as_str()));
            store.audit_failure(&action, target, &detail, (&id, &actor))
        });
    }
    result
}
