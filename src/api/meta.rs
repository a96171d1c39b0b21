//! `$meta`, `$meta-add`, `$meta-delete`: a resource's profiles, tags and security labels read,
//! added and removed (as a new version, on the write's path: `fhir::patch::meta`), and the
//! ones in use on a type or on the whole server.

use super::AppState;
use super::body::{parse_resource, read_limited};
use super::context::{RequestContext, body_format};
use super::crud::write;
use super::error::ApiError;
use super::path::{IfMatch, Instance, TypeName};
use super::render;
use crate::auth::Interaction;
use crate::fhir::parameters::{Answer, Params};
use crate::fhir::patch::Patch;
use crate::ingest::rest;
use crate::store::search::meta_in_use::{InUse, in_use};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

/// `GET|POST [type]/[id]/$meta`: the current version's meta.
pub async fn of_instance(
    state: web::Data<AppState>,
    Instance { rtype, id }: Instance,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let (store, rt, i) = (state.store.clone(), rtype.clone(), id.to_string());
    let version = web::block(move || store.current(&rt, &i)).await??;
    ctx.grant
        .check(Interaction::Read, &rtype, id.as_str(), || version.json())
        .map_err(|_| ApiError::unseen(&rtype, id.as_str()))?;
    answer(&ctx, version.json()["meta"].clone())
}

/// `GET [type]/$meta`: the profiles, tags and labels resources of the type carry.
pub async fn of_type(
    state: web::Data<AppState>,
    TypeName(rtype): TypeName,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    ctx.grant.reach(Interaction::Search, &rtype)?;
    let store = state.store.clone();
    let found = web::block(move || store.read(|c| in_use(c, &[rtype.as_str()]))).await??;
    answer(&ctx, meta_of(found))
}

/// `GET [base]/$meta`: the same over every type the token may search.
pub async fn of_system(
    state: web::Data<AppState>,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let defs = crate::fhir::definitions::Definitions::get();
    let types: Vec<String> = defs
        .resource_types()
        .filter(|t| ctx.grant.reach(Interaction::Search, t).is_ok())
        .map(str::to_string)
        .collect();
    let store = state.store.clone();
    let found = web::block(move || {
        let types: Vec<&str> = types.iter().map(String::as_str).collect();
        store.read(|c| in_use(c, &types))
    })
    .await??;
    answer(&ctx, meta_of(found))
}

/// `POST [type]/[id]/$meta-add`.
pub async fn add(
    state: web::Data<AppState>,
    instance: Instance,
    if_match: IfMatch,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    change(state, instance, if_match, req, payload, ctx, true).await
}

/// `POST [type]/[id]/$meta-delete`.
pub async fn delete(
    state: web::Data<AppState>,
    instance: Instance,
    if_match: IfMatch,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    change(state, instance, if_match, req, payload, ctx, false).await
}

async fn change(
    state: web::Data<AppState>,
    Instance { rtype, id }: Instance,
    IfMatch(expected): IfMatch,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
    add: bool,
) -> Result<HttpResponse, ApiError> {
    let bytes = read_limited(&req, payload, state.max_body_bytes).await?;
    let body = parse_resource(&bytes, body_format(&req)?)?;
    let params = Params::from_resource(&body).map_err(ApiError::bad_request)?;
    let meta = params
        .json("meta")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("the Parameters must hold 'meta' (a Meta)"))?;
    let patch = Patch::Meta(meta, add);
    let request = rest::PatchRequest {
        expected,
        lenient: ctx.lenient,
        max_bytes: state.max_body_bytes,
    };
    let target = Some((rtype.clone(), id.to_string()));
    let action = if add { "meta-add" } else { "meta-delete" };
    let (written, _) = write(&state, &ctx, action, target, move |store, w| {
        Ok(store.write(|tx| rest::patch(tx, &rtype, &id, &patch, &request, w))?)
    })
    .await?;
    answer(&ctx, written.version.json()["meta"].clone())
}

/// The Meta of what is in use (profiles, then tags and labels as codings).
fn meta_of(found: InUse) -> Value {
    let coding = |(system, code): (Option<String>, Option<String>)| {
        let mut c = serde_json::Map::new();
        if let Some(s) = system {
            c.insert("system".into(), json!(s));
        }
        if let Some(c2) = code {
            c.insert("code".into(), json!(c2));
        }
        Value::Object(c)
    };
    let mut meta = serde_json::Map::new();
    if !found.profiles.is_empty() {
        meta.insert("profile".into(), json!(found.profiles));
    }
    let tags: Vec<Value> = found.tags.into_iter().map(coding).collect();
    if !tags.is_empty() {
        meta.insert("tag".into(), Value::Array(tags));
    }
    let security: Vec<Value> = found.security.into_iter().map(coding).collect();
    if !security.is_empty() {
        meta.insert("security".into(), Value::Array(security));
    }
    Value::Object(meta)
}

/// The operations' answer: a Parameters whose `return` is the Meta.
fn answer(ctx: &RequestContext, meta: Value) -> Result<HttpResponse, ApiError> {
    let meta = match meta {
        Value::Object(_) => meta,
        _ => json!({}),
    };
    let out = Answer::default().value("return", "Meta", meta).build();
    render::fhir(StatusCode::OK, &out, ctx)
}
