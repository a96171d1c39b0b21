//! Type-level search: `GET [base]/[type]?params` and `POST [base]/[type]/_search` (form body).
//! Parameters become typed clauses; result controls shape the searchset Bundle. A parameter this
//! server does not know is refused with 400, or with `Prefer: handling=lenient` ignored and
//! reported in an OperationOutcome entry of the Bundle.

use super::AppState;
use super::body::read_limited;
use super::context::RequestContext;
use super::error::ApiError;
use super::interaction::check_type;
use super::paging::{self, CURSOR};
use super::render;
use crate::fhir::bundle::bundle;
use crate::fhir::search::query::{Clause, parse_clause};
use crate::fhir::{Issue, operation_outcome};
use crate::store::search::{SearchSpec, search};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

const DEFAULT_COUNT: i64 = 20;
const MAX_COUNT: i64 = 1000;

/// Parameters that shape the response rather than select resources.
const RESULT_PARAMS: &[&str] = &["_count", "_total", "_format", "_pretty", CURSOR];

/// Result controls of the spec this server does not offer yet: refused by name, so that a
/// client is never handed an unsorted or unfiltered result it did not ask for.
const NOT_YET: &[&str] = &[
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_contained",
    "_containedType",
    "_has",
    "_list",
    "_text",
    "_content",
    "_query",
    "_filter",
];

/// What the query string asked for.
struct Request {
    clauses: Vec<Clause>,
    count: i64,
    after_id: Option<String>,
    total: bool,
    /// Parameters ignored under lenient handling, reported to the client.
    ignored: Vec<Issue>,
}

fn parse_request(
    rtype: &str,
    params: &[(String, String)],
    lenient: bool,
) -> Result<Request, ApiError> {
    let mut req = Request {
        clauses: Vec::new(),
        count: DEFAULT_COUNT,
        after_id: None,
        total: true,
        ignored: Vec::new(),
    };
    for (name, value) in params {
        match name.as_str() {
            "_count" => {
                let n: i64 = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("_count '{value}' is not a number"))
                })?;
                req.count = n.clamp(0, MAX_COUNT);
            }
            "_total" => {
                req.total = match value.as_str() {
                    "none" => false,
                    "estimate" | "accurate" => true,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "_total '{other}' must be none, estimate or accurate"
                        )));
                    }
                }
            }
            CURSOR => req.after_id = Some(value.clone()),
            n if RESULT_PARAMS.contains(&n) => {}
            n => {
                let mut unsupported = |msg: String| -> Result<(), ApiError> {
                    if lenient {
                        req.ignored.push(Issue::warning(
                            "not-supported",
                            format!("{msg} (ignored: lenient handling)"),
                        ));
                        Ok(())
                    } else {
                        Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            Issue::error("not-supported", msg),
                        ))
                    }
                };
                let code = n.split([':', '.']).next().unwrap_or(n);
                if NOT_YET.contains(&code) || n.contains('.') {
                    unsupported(format!("search parameter '{n}' is not supported yet"))?;
                    continue;
                }
                match parse_clause(rtype, n, value) {
                    Ok(Some(clause)) => req.clauses.push(clause),
                    Ok(None) => unsupported(format!(
                        "'{n}' is not a search parameter of {rtype} (see the CapabilityStatement)"
                    ))?,
                    Err(e) => return Err(ApiError::bad_request(e.0)),
                }
            }
        }
    }
    Ok(req)
}

pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let params = query_params(req.query_string())?;
    run(state, path.into_inner(), params, ctx).await
}

/// `POST [type]/_search`: parameters in the form body (and the URL).
pub async fn post(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Issue::error(
                "not-supported",
                "POST _search takes application/x-www-form-urlencoded parameters",
            ),
        ));
    }
    let body = read_limited(payload, state.max_body_bytes).await?;
    let mut params = query_params(req.query_string())?;
    params.extend(query_params(&String::from_utf8_lossy(&body))?);
    run(state, path.into_inner(), params, ctx).await
}

fn query_params(qs: &str) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(qs)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))
}

async fn run(
    state: web::Data<AppState>,
    rtype: String,
    params: Vec<(String, String)>,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    check_type(&rtype)?;
    let request = parse_request(&rtype, &params, ctx.lenient)?;
    let store = state.store.clone();
    let rt = rtype.clone();
    let (clauses, count, after, total) = (
        request.clauses,
        request.count,
        request.after_id.clone(),
        request.total,
    );
    let page = web::block(move || {
        store.read(|c| {
            search(
                c,
                &SearchSpec {
                    resource_type: &rt,
                    clauses: &clauses,
                    count,
                    after_id: after.as_deref(),
                    total,
                },
            )
        })
    })
    .await??;
    let base = &state.base_url;
    let next = page
        .more
        .then(|| page.versions.last().map(|v| v.id.clone()))
        .flatten();
    let links = paging::links(&format!("{base}/{rtype}"), &params, next);
    let mut entries: Vec<Value> = page
        .versions
        .iter()
        .map(|v| {
            json!({
                "fullUrl": format!("{base}/{}/{}", v.resource_type, v.id),
                "resource": v.json(),
                "search": { "mode": "match" }
            })
        })
        .collect();
    if !request.ignored.is_empty() {
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            "resource": operation_outcome(&request.ignored),
            "search": { "mode": "outcome" }
        }));
    }
    let b = bundle("searchset", page.total, links, entries);
    render::fhir(StatusCode::OK, &b, &ctx)
}
