//! Search: `GET [base]/[type]?params`, `POST [base]/[type]/_search`, the Patient compartment
//! (`GET [base]/Patient/[id]/[type]`) and system search (`GET [base]?_type=...`). Parameters
//! become filters (`request`); the page of matches, what `_include`/`_revinclude` add and the
//! paging links make a searchset Bundle.

mod confine;
mod contained;
mod request;

use super::AppState;
use super::body::read_limited;
use super::context::RequestContext;
use super::error::ApiError;
use super::paging;
use super::path::{check_type, parse_id};
use super::render;
use crate::auth::Interaction;
use crate::fhir::bundle::bundle;
use crate::fhir::search::filter::patient_compartment;
use crate::fhir::subset;
use crate::fhir::{Issue, operation_outcome};
use crate::ingest::rest::local_references;
use crate::store::db::DbConnection;
use crate::store::search::{Cursor, Page, Scope, SearchError, SearchSpec, includes, search};
use crate::store::versions::Version;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
pub use request::{SearchRequest, Total, Types};
use serde_json::{Value, json};

/// Resources `_include` and `_revinclude` add to one page, at most.
const MAX_INCLUDED: usize = 1000;

pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let rtype = path.into_inner();
    check_type(&rtype)?;
    let params = query_params(req.query_string())?;
    let path = format!("{}/{rtype}", state.base_url);
    run(state, Types::One(rtype), None, params, path, ctx).await
}

/// `POST [type]/_search`: parameters in the form body (and the URL).
pub async fn post(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let rtype = path.into_inner();
    check_type(&rtype)?;
    let params = form_params(&state, &req, payload).await?;
    let path = format!("{}/{rtype}", state.base_url);
    run(state, Types::One(rtype), None, params, path, ctx).await
}

/// `GET [base]/Patient/[id]/[type]`: a search of one patient's compartment.
pub async fn compartment(
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    req: HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let params = query_params(req.query_string())?;
    in_compartment(state, path.into_inner(), params, ctx).await
}

/// `POST [base]/Patient/[id]/[type]/_search`: the same, parameters in the form body too.
pub async fn compartment_post(
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let params = form_params(&state, &req, payload).await?;
    in_compartment(state, path.into_inner(), params, ctx).await
}

async fn in_compartment(
    state: web::Data<AppState>,
    (compartment, id, rtype): (String, String, String),
    params: Vec<(String, String)>,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    check_type(&compartment)?;
    if compartment != "Patient" {
        return Err(ApiError::not_found(format!(
            "only the Patient compartment is searchable, not {compartment}"
        )));
    }
    check_type(&rtype)?;
    parse_id(&id)?;
    let filter = patient_compartment(&rtype, &id).map_err(|e| ApiError::bad_request(e.message))?;
    let path = format!("{}/Patient/{id}/{rtype}", state.base_url);
    run(state, Types::One(rtype), Some(filter), params, path, ctx).await
}

/// `GET [base]?params`: every type, or those `_type` names.
pub async fn system_get(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let params = query_params(req.query_string())?;
    system(state, params, ctx).await
}

/// `POST [base]/_search`.
pub async fn system_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let params = form_params(&state, &req, payload).await?;
    system(state, params, ctx).await
}

async fn system(
    state: web::Data<AppState>,
    params: Vec<(String, String)>,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let mut named: Vec<String> = Vec::new();
    for (_, v) in params.iter().filter(|(k, _)| k == "_type") {
        for t in v.split(',').filter(|t| !t.is_empty()) {
            check_type(t)?;
            if !named.iter().any(|n| n == t) {
                named.push(t.to_string());
            }
        }
    }
    let types = match named.len() {
        0 => Types::All,
        1 => Types::One(named.remove(0)),
        _ => Types::Some(named),
    };
    let path = state.base_url.clone();
    run(state, types, None, params, path, ctx).await
}

async fn form_params(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Vec<(String, String)>, ApiError> {
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body = read_limited(req, payload, state.max_body_bytes).await?;
    // an empty body (every parameter in the URL) is read whatever it claims to be
    if !body.is_empty() && !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Issue::error(
                "not-supported",
                "POST _search takes application/x-www-form-urlencoded parameters",
            ),
        ));
    }
    let mut params = query_params(req.query_string())?;
    params.extend(query_params(&String::from_utf8_lossy(&body))?);
    Ok(params)
}

fn query_params(qs: &str) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(qs)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::BadCursor => ApiError::bad_request(e.to_string()),
            SearchError::Store(s) => s.into(),
        }
    }
}

async fn run(
    state: web::Data<AppState>,
    types: Types,
    compartment: Option<crate::fhir::search::filter::Filter>,
    params: Vec<(String, String)>,
    path: String,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let names: Vec<&str> = match &types {
        Types::One(t) => vec![t.as_str()],
        Types::Some(ts) => ts.iter().map(String::as_str).collect(),
        Types::All => Vec::new(),
    };
    let own = local_references(&params, &names, &state.base_url);
    let request = SearchRequest::parse(&types, &own, compartment, ctx.lenient)?;
    respond(state, request, &params, &path, ctx).await
}

/// A searchset Bundle of what `request` finds, within what the caller's token reaches; its
/// paging links repeat `params` at `path`.
pub async fn respond(
    state: web::Data<AppState>,
    mut request: SearchRequest,
    params: &[(String, String)],
    path: &str,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    confine::confine(&ctx.grant, &mut request)?;
    let store = state.store.clone();
    if request
        .filters
        .iter()
        .flat_map(|(_, f)| f.iter())
        .any(|f| f.through_terminology())
    {
        let terminology = state.terminology.clone();
        request = web::block(move || {
            for f in request.filters.iter_mut().flat_map(|(_, f)| f.iter_mut()) {
                crate::terminology::search::resolve(&terminology, f)?;
            }
            Ok::<_, crate::terminology::TermError>(request)
        })
        .await?
        .map_err(|e| match e {
            // a search's bad value is the request's fault (400), whatever the operation says
            crate::terminology::TermError::NotFound(t)
            | crate::terminology::TermError::Invalid(t) => ApiError::bad_request(t),
            other => other.into(),
        })?;
    }
    if let Some(returned) = request.contained {
        return contained::respond(state, request, returned, params, path, ctx).await;
    }
    let (page, mut included, cut, request) =
        web::block(move || store.read(|c| Ok(execute(c, request)))).await???;
    // what _include and _revinclude add is read like any other resource
    included.retain(|v| {
        ctx.grant
            .check(Interaction::Search, &v.resource_type, &v.id, || v.json())
            .is_ok()
    });
    let base = &state.base_url;
    let (next, previous) = page_cursors(&page, &request);
    let links = paging::links(path, params, next, previous);
    let entry = |v: &Version, mode: &str| {
        json!({
            "fullUrl": format!("{base}/{}/{}", v.resource_type, v.id),
            "resource": shaped(v.json(), &request),
            "search": { "mode": mode }
        })
    };
    ctx.showed(page.versions.iter().chain(&included));
    let mut entries: Vec<Value> = page.versions.iter().map(|v| entry(v, "match")).collect();
    entries.extend(included.iter().map(|v| entry(v, "include")));
    let mut notes = request.ignored.clone();
    if cut {
        notes.push(Issue::warning(
            "too-costly",
            format!("_include and _revinclude added the first {MAX_INCLUDED} resources only"),
        ));
    }
    if !notes.is_empty() {
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            "resource": operation_outcome(&notes),
            "search": { "mode": "outcome" }
        }));
    }
    let b = bundle("searchset", page.total, links, entries);
    render::fhir(StatusCode::OK, &b, &ctx)
}

/// `resource` as the request's `_summary` and `_elements` shape it.
fn shaped(mut resource: Value, request: &SearchRequest) -> Value {
    if let Some(s) = request.summary {
        subset::summarize(&mut resource, s);
    }
    if let Some(e) = &request.elements {
        subset::elements(&mut resource, e);
    }
    resource
}

/// The page of matches, and what `_include`/`_revinclude` add to it (with whether the
/// limit cut that list short).
fn execute(
    c: &mut DbConnection,
    mut request: SearchRequest,
) -> Result<(Page, Vec<Version>, bool, SearchRequest), SearchError> {
    // `:mdm` clauses name persons: their records are read in this same snapshot
    for f in request.filters.iter_mut().flat_map(|(_, f)| f.iter_mut()) {
        crate::identity::reading::expand(c, f)?;
    }
    let spec = SearchSpec {
        scope: if request.all_types {
            Scope::AllTypes(&request.filters[0].1)
        } else {
            Scope::Types(&request.filters)
        },
        sort: &request.sort,
        count: if request.count_only { 0 } else { request.count },
        cursor: request.cursor.as_ref(),
        total: request.total == Total::Count || request.count_only || request.count == 0,
    };
    let mut page = search(c, &spec)?;
    if page.total.is_none()
        && request.total == Total::WhenFree
        && request.cursor.is_none()
        && !page.more
    {
        page.total = Some(page.versions.len() as i64);
    }
    let (included, cut) = includes(c, &page.versions, &request.includes, MAX_INCLUDED)?;
    Ok((page, included, cut, request))
}

/// The cursors of the `next` and `previous` pages, when there are such pages.
fn page_cursors(page: &Page, request: &SearchRequest) -> (Option<String>, Option<String>) {
    let sort = &request.sort;
    let backward = request.cursor.as_ref().is_some_and(|c| c.before);
    let (has_next, has_previous) = if backward {
        (true, page.more)
    } else {
        (page.more, request.cursor.is_some())
    };
    let at = |v: Option<&Version>, before: bool| -> Option<String> {
        match v {
            Some(v) => Some(Cursor::of(v, sort, before).encode()),
            // an empty page: turn round at the position asked for
            None => request.cursor.as_ref().map(|c| {
                Cursor {
                    before,
                    ..c.clone()
                }
                .encode()
            }),
        }
    };
    let next = if has_next && !request.count_only {
        at(page.versions.last(), false)
    } else {
        None
    };
    let previous = if has_previous && !request.count_only {
        at(page.versions.first(), true)
    } else {
        None
    };
    (next, previous)
}
