//! History at three levels (system, type, instance) with `_since`, `_count` and cursor paging:
//! the `next` link names the last sequence number seen, so pages stay exact while others write.

use super::AppState;
use super::context::RequestContext;
use super::error::ApiError;
use super::paging::{self, CURSOR};
use super::path::{check_type, parse_id};
use super::render;
use crate::auth::{Interaction, Reach};
use crate::fhir::bundle::bundle;
use crate::fhir::resource::instant;
use crate::fhir::resource::parse_instant;
use crate::store::{HistoryQuery, versions};
use crate::store::{Method, Version};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};

const DEFAULT_COUNT: i64 = 50;
const MAX_COUNT: i64 = 1000;

pub async fn system(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    history(state, req, ctx, None, None).await
}

pub async fn of_type(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let rtype = path.into_inner();
    check_type(&rtype)?;
    history(state, req, ctx, Some(rtype), None).await
}

pub async fn of_instance(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let (rtype, id) = path.into_inner();
    check_type(&rtype)?;
    parse_id(&id)?;
    history(state, req, ctx, Some(rtype), Some(id)).await
}

async fn history(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: RequestContext,
    rtype: Option<String>,
    id: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let params: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let mut q = HistoryQuery {
        resource_type: rtype.clone(),
        id: id.clone(),
        count: DEFAULT_COUNT,
        ..Default::default()
    };
    for (name, value) in &params {
        match name.as_str() {
            "_since" => {
                q.since = Some(parse_instant(value).ok_or_else(|| {
                    ApiError::bad_request(format!("_since '{value}' is not an instant"))
                })?)
            }
            "_count" => {
                let n: i64 = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("_count '{value}' is not a number"))
                })?;
                q.count = n.clamp(0, MAX_COUNT);
            }
            CURSOR => {
                q.before_seq = Some(
                    value
                        .parse()
                        .map_err(|_| ApiError::bad_request("bad paging cursor"))?,
                )
            }
            "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "history parameter '{other}' is not supported (supported: _since, _count)"
                )));
            }
        }
    }
    // A token confined to one patient sees the versions that were in that patient's
    // compartment; an instance outside it is refused outright, and the total of a type or
    // system history (which would count other patients' changes) is left out.
    let confined = match &rtype {
        Some(t) => !matches!(ctx.grant.reach(Interaction::Read, t)?, Reach::All),
        None => !ctx.grant.reaches_everything(Interaction::Read),
    };
    let store = state.store.clone();
    let query = q.clone();
    let grant = ctx.grant.clone();
    let (page, total) = web::block(move || {
        store.read(|c| {
            // a confined caller learns nothing of an instance it may not read (or that is
            // deleted): as if it never existed
            if let (true, Some(rt), Some(id)) = (confined, &query.resource_type, &query.id) {
                let unseen = || crate::store::StoreError::NotFound {
                    resource_type: rt.clone(),
                    id: id.clone(),
                };
                match versions::current(c, rt, id)? {
                    Some(current) if !current.deleted => grant
                        .check(Interaction::Read, rt, id, || current.json())
                        .map_err(|_| unseen())?,
                    _ => return Err(unseen()),
                }
            }
            let mut page = versions::history(c, &query)?;
            let total = versions::history_total(c, &query)?;
            if let (Some(rt), Some(id), true) = (&query.resource_type, &query.id, total == 0) {
                // an instance that never existed is a 404, not an empty history
                if versions::current(c, rt, id)?.is_none() {
                    return Err(crate::store::StoreError::NotFound {
                        resource_type: rt.clone(),
                        id: id.clone(),
                    });
                }
            }
            page.truncate(query.count as usize);
            Ok((page, total))
        })
    })
    .await??;

    let base = &state.base_url;
    let mut path = base.clone();
    if let Some(t) = &rtype {
        path = format!("{path}/{t}");
    }
    if let Some(i) = &id {
        path = format!("{path}/{i}");
    }
    path.push_str("/_history");
    let next = (page.len() as i64 == q.count && q.count > 0)
        .then(|| page.last().map(|last| last.seq.to_string()))
        .flatten();
    let links = paging::links(&path, &params, next, None);
    let entries = page
        .iter()
        .filter(|v| {
            !confined
                || (!v.deleted
                    && ctx
                        .grant
                        .check(Interaction::Read, &v.resource_type, &v.id, || v.json())
                        .is_ok())
        })
        .map(|v| history_entry(v, base))
        .collect();
    let total = (!confined || id.is_some()).then_some(total);
    let b = bundle("history", total, links, entries);
    render::fhir(StatusCode::OK, &b, &ctx)
}

/// A history Bundle entry for one version, as the spec's history interaction describes it.
pub fn history_entry(v: &Version, base: &str) -> Value {
    let mut entry = Map::new();
    entry.insert(
        "fullUrl".into(),
        json!(format!("{base}/{}/{}", v.resource_type, v.id)),
    );
    if !v.deleted {
        entry.insert("resource".into(), v.json());
    }
    let url = match v.method {
        Method::Post => v.resource_type.clone(),
        _ => format!("{}/{}", v.resource_type, v.id),
    };
    entry.insert(
        "request".into(),
        json!({ "method": v.method.as_str(), "url": url }),
    );
    let status = match v.method {
        Method::Post => "201 Created",
        Method::Delete => "204 No Content",
        _ if v.version_id == 1 => "201 Created",
        _ => "200 OK",
    };
    entry.insert(
        "response".into(),
        json!({
            "status": status,
            "etag": format!("W/\"{}\"", v.version_id),
            "lastModified": instant(v.last_updated),
        }),
    );
    Value::Object(entry)
}
