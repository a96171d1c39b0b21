//! History at three levels (system, type, instance) with `_since`, `_count` and cursor paging:
//! the `next` link names the last sequence number seen, so pages stay exact while others write.

use super::AppState;
use super::context::RequestContext;
use super::error::ApiError;
use super::paging::{self, CURSOR};
use super::path::{Instance, TypeName};
use super::render;
use crate::auth::{Interaction, Reach};
use crate::fhir::bundle::bundle;
use crate::fhir::resource::instant;
use crate::fhir::resource::parse_instant;
use crate::store::{HistoryQuery, StoreError, versions};
use crate::store::{Method, Version};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};

const DEFAULT_COUNT: i64 = 50;
const MAX_COUNT: i64 = 1000;

pub async fn system(
    state: web::Data<AppState>,
    params: HistoryParams,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    history(state, params, ctx, None, None).await
}

pub async fn of_type(
    state: web::Data<AppState>,
    TypeName(rtype): TypeName,
    params: HistoryParams,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    history(state, params, ctx, Some(rtype), None).await
}

pub async fn of_instance(
    state: web::Data<AppState>,
    Instance { rtype, id }: Instance,
    params: HistoryParams,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    history(state, params, ctx, Some(rtype), Some(id.to_string())).await
}

/// A history request's query: `_since`, `_count` and the paging cursor (anything else is
/// refused, so that a client never takes a filter it asked for as applied).
pub struct HistoryParams {
    /// As given, for the paging links.
    given: Vec<(String, String)>,
    since: Option<i64>,
    count: i64,
    before_seq: Option<i64>,
}

impl HistoryParams {
    fn parse(query: &str) -> Result<HistoryParams, ApiError> {
        let given: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
        let mut p = HistoryParams {
            given: Vec::new(),
            since: None,
            count: DEFAULT_COUNT,
            before_seq: None,
        };
        for (name, value) in &given {
            let bad = |what: &str| ApiError::bad_request(format!("{name} '{value}' is not {what}"));
            match name.as_str() {
                "_since" => p.since = Some(parse_instant(value).ok_or_else(|| bad("an instant"))?),
                "_count" => {
                    let n: i64 = value.parse().map_err(|_| bad("a number"))?;
                    p.count = n.clamp(0, MAX_COUNT);
                }
                CURSOR => p.before_seq = Some(value.parse().map_err(|_| bad("a paging cursor"))?),
                "_format" | "_pretty" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "history parameter '{other}' is not supported (supported: _since, _count)"
                    )));
                }
            }
        }
        p.given = given;
        Ok(p)
    }
}

impl actix_web::FromRequest for HistoryParams {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(HistoryParams::parse(req.query_string()))
    }
}

async fn history(
    state: web::Data<AppState>,
    params: HistoryParams,
    ctx: RequestContext,
    rtype: Option<String>,
    id: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let query = HistoryQuery {
        resource_type: rtype.clone(),
        id: id.clone(),
        since: params.since,
        count: params.count,
        before_seq: params.before_seq,
    };
    // A token confined to one patient sees the versions that were in that patient's
    // compartment; an instance outside it is refused outright, and the total of a type or
    // system history (which would count other patients' changes) is left out.
    let confined = match &rtype {
        Some(t) => !matches!(ctx.grant.reach(Interaction::Read, t)?, Reach::All),
        None => !ctx.grant.reaches_everything(Interaction::Read),
    };
    let (store, grant, q) = (state.store.clone(), ctx.grant.clone(), query.clone());
    let (page, total) =
        web::block(move || read_page(&store, &q, confined.then_some(&*grant))).await??;
    let base = &state.base_url;
    let path = [
        Some(base.as_str()),
        rtype.as_deref(),
        id.as_deref(),
        Some("_history"),
    ];
    let path = path.into_iter().flatten().collect::<Vec<_>>().join("/");
    let next = (page.len() as i64 == query.count && query.count > 0)
        .then(|| page.last().map(|last| last.seq.to_string()))
        .flatten();
    let links = paging::links(&path, &params.given, next, None);
    let readable = |v: &&Version| {
        let allowed = || {
            ctx.grant
                .check(Interaction::Read, &v.resource_type, &v.id, || v.json())
        };
        !confined || (!v.deleted && allowed().is_ok())
    };
    let shown: Vec<&Version> = page.iter().filter(readable).collect();
    ctx.showed(shown.iter().copied());
    let entries = shown.iter().map(|v| history_entry(v, base)).collect();
    let total = (!confined || id.is_some()).then_some(total);
    render::fhir(
        StatusCode::OK,
        &bundle("history", total, links, entries),
        &ctx,
    )
}

/// One page of `query`'s history and its total. A caller `confined` to a grant learns nothing
/// of an instance it may not read (or that is deleted): as if it never existed; an instance
/// that never existed is a 404, not an empty history.
fn read_page(
    store: &crate::store::Store,
    query: &HistoryQuery,
    confined: Option<&crate::auth::Grant>,
) -> Result<(Vec<Version>, i64), StoreError> {
    store.read(|c| {
        let instance = query.resource_type.as_ref().zip(query.id.as_ref());
        let unseen = |(rt, id): (&String, &String)| StoreError::NotFound {
            resource_type: rt.clone(),
            id: id.clone(),
        };
        if let (Some(grant), Some((rt, id))) = (confined, instance) {
            match versions::current(c, rt, id)? {
                Some(current) if !current.deleted => grant
                    .check(Interaction::Read, rt, id, || current.json())
                    .map_err(|_| unseen((rt, id)))?,
                _ => return Err(unseen((rt, id))),
            }
        }
        let mut page = versions::history(c, query)?;
        let total = versions::history_total(c, query)?;
        if let (Some((rt, id)), 0) = (instance, total)
            && versions::current(c, rt, id)?.is_none()
        {
            return Err(unseen((rt, id)));
        }
        page.truncate(query.count as usize);
        Ok((page, total))
    })
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
