//! Handlers of the instance and type interactions: read, vread, create, update, patch, delete.
//! Each parses the request, calls one interaction in a store transaction, and renders.

use super::AppState;
use super::body::{parse_resource, read_limited};
use super::context::{RequestContext, body_format};
use super::error::ApiError;
use super::interaction::{self, Prepared, check_type, parse_etag, parse_id, prepare};
use super::render;
use crate::auth::{Interaction, Reach};
use crate::fhir::Issue;
use crate::store::{StoreError, versions};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

type Path2 = web::Path<(String, String)>;

fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    req.headers()
        .get("if-match")
        .map(|v| parse_etag(v.to_str().unwrap_or("")))
        .transpose()
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub async fn read(
    state: web::Data<AppState>,
    path: Path2,
    req: HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let (rtype, id) = path.into_inner();
    check_type(&rtype)?;
    parse_id(&id)?;
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
    render::version(StatusCode::OK, &version, &ctx, None, &[])
}

pub async fn vread(
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let (rtype, id, vid) = path.into_inner();
    check_type(&rtype)?;
    parse_id(&id)?;
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
    render::version(StatusCode::OK, &version, &ctx, None, &[])
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

/// A JSON Patch document from a PATCH request's body.
pub async fn patch_body(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Value, ApiError> {
    let ct = header(req, "content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if ct != "application/json-patch+json" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Issue::error(
                "not-supported",
                format!("PATCH needs Content-Type application/json-patch+json, not '{ct}'"),
            ),
        ));
    }
    let bytes = read_limited(req, payload, state.max_body_bytes).await?;
    let ops: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Issue::error("structure", format!("invalid JSON: {e}")),
        )
    })?;
    Ok(ops)
}

pub async fn create(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let rtype = path.into_inner();
    check_type(&rtype)?;
    let body = resource_body(&state, &req, payload).await?;
    let condition = header(&req, "if-none-exist").map(str::to_string);
    let wctx = ctx.write_context();
    let store = state.store.clone();
    let rt = rtype.clone();
    let lenient = ctx.lenient;
    let base = state.base_url.clone();
    let result = web::block(move || {
        let Prepared { resource, warnings } = prepare(body, &rt, lenient)?;
        let written = store.write(|tx| {
            interaction::create(tx, &rt, resource, condition.as_deref(), &base, &wctx)
        })?;
        Ok::<_, ApiError>((written, warnings))
    })
    .await?;
    let (written, warnings) = audited(&state, &ctx, "create", Some(&rtype), None, result)?;
    let status = if written.noop {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    render::version(
        status,
        &written.version,
        &ctx,
        Some(&state.base_url),
        &warnings,
    )
}

pub async fn update(
    state: web::Data<AppState>,
    path: Path2,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let (rtype, id) = path.into_inner();
    check_type(&rtype)?;
    let fid = parse_id(&id)?;
    let expected = if_match(&req)?;
    let body = resource_body(&state, &req, payload).await?;
    let wctx = ctx.write_context();
    let store = state.store.clone();
    let rt = rtype.clone();
    let lenient = ctx.lenient;
    let result = web::block(move || {
        let Prepared { resource, warnings } = prepare(body, &rt, lenient)?;
        let written =
            store.write(|tx| interaction::update(tx, &rt, &fid, resource, expected, &wctx))?;
        Ok::<_, ApiError>((written, warnings))
    })
    .await?;
    let (written, warnings) = audited(&state, &ctx, "update", Some(&rtype), Some(&id), result)?;
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
    path: Path2,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let (rtype, id) = path.into_inner();
    check_type(&rtype)?;
    let fid = parse_id(&id)?;
    let expected = if_match(&req)?;
    let ops = patch_body(&state, &req, payload).await?;
    let wctx = ctx.write_context();
    let store = state.store.clone();
    let rt = rtype.clone();
    let lenient = ctx.lenient;
    let max_bytes = state.max_body_bytes;
    let result = web::block(move || {
        let request = interaction::PatchRequest {
            operations: &ops,
            expected,
            lenient,
            max_bytes,
        };
        store.write(|tx| interaction::patch(tx, &rt, &fid, &request, &wctx))
    })
    .await?;
    let (written, warnings) = audited(&state, &ctx, "patch", Some(&rtype), Some(&id), result)?;
    render::version(StatusCode::OK, &written.version, &ctx, None, &warnings)
}

pub async fn delete(
    state: web::Data<AppState>,
    path: Path2,
    req: HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let (rtype, id) = path.into_inner();
    check_type(&rtype)?;
    let fid = parse_id(&id)?;
    let expected = if_match(&req)?;
    let wctx = ctx.write_context();
    let store = state.store.clone();
    let rt = rtype.clone();
    let result =
        web::block(move || store.write(|tx| interaction::delete(tx, &rt, &fid, expected, &wctx)))
            .await?;
    let written = audited(&state, &ctx, "delete", Some(&rtype), Some(&id), result)?;
    deleted(&written, &rtype, &id, &ctx)
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

/// Pass a write's result through, recording refused writes in the audit trail.
pub fn audited<T>(
    state: &AppState,
    ctx: &RequestContext,
    action: &str,
    rtype: Option<&str>,
    id: Option<&str>,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    if let Err(e) = &result {
        let target = rtype.map(|t| (t, id.unwrap_or("")));
        let detail = e.to_string();
        let store = state.store.clone();
        let (action, wctx) = (action.to_string(), ctx.write_context());
        let target = target.map(|(t, i)| (t.to_string(), i.to_string()));
        // off the request path: the client's answer does not wait for the audit row
        actix_web::rt::task::spawn_blocking(move || {
            let target = target.as_ref().map(|(t, i)| (t.as_str(), i.as_str()));
            store.audit_failure(&action, target, &detail, &wctx)
        });
    }
    result
}
