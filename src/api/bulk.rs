//! Bulk Data export over HTTP (`bulk`): `GET|POST [base]/$export` kicks a job off (202 with
//! its status URL in `Content-Location`); `GET [base]/$export-status/[id]` answers 202 with
//! `X-Progress` while it runs, then 200 with the manifest; `DELETE` cancels it; the manifest's
//! files are `GET [base]/$export-file/[id]/[name]`, ndjson, to the same client only.

use super::AppState;
use super::body::{parse_resource, read_limited};
use super::context::{RequestContext, body_format};
use super::error::ApiError;
use super::path::{Id, QueryPairs};
use crate::auth::Interaction;
use crate::bulk::{ExportError, ExportRequest, Level, Status};
use crate::fhir::Issue;
use crate::fhir::parameters::Params;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

/// How long a client is told to wait between polls.
const RETRY_AFTER_SECS: u32 = 2;

/// `GET` or `POST [base]/$export`: a POST's parameters may come in a `Parameters` body (as
/// Medplum's client sends them) as well as in the query string.
pub async fn system(
    state: web::Data<AppState>,
    QueryPairs(params): QueryPairs,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let params = with_body(&state, params, &req, payload).await?;
    kick_off(state, Level::System, params, &req, ctx).await
}

/// `GET` or `POST [base]/Patient/$export`.
pub async fn patient(
    state: web::Data<AppState>,
    QueryPairs(params): QueryPairs,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let params = with_body(&state, params, &req, payload).await?;
    kick_off(state, Level::Patient, params, &req, ctx).await
}

/// `GET` or `POST [base]/Group/[id]/$export`.
pub async fn group(
    state: web::Data<AppState>,
    Id(id): Id,
    QueryPairs(params): QueryPairs,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    readable_group(&state, id.as_str(), &ctx).await?;
    let params = with_body(&state, params, &req, payload).await?;
    kick_off(state, Level::Group(id.to_string()), params, &req, ctx).await
}

/// A Group export's Group must exist and be the caller's to read: said at kick-off, not in a
/// failed job later.
async fn readable_group(state: &AppState, id: &str, ctx: &RequestContext) -> Result<(), ApiError> {
    let (store, gid) = (state.store.clone(), id.to_string());
    let group = web::block(move || store.current("Group", &gid)).await??;
    let json = group.json();
    ctx.grant
        .check(Interaction::Read, "Group", id, || &json)
        .map_err(|_| ApiError::unseen("Group", id))
}

/// The query string's parameters and those of a `Parameters` body, if any: text values, and
/// `patient` references (`valueReference`).
async fn with_body(
    state: &AppState,
    mut params: Vec<(String, String)>,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Vec<(String, String)>, ApiError> {
    let bytes = read_limited(req, payload, state.max_body_bytes).await?;
    if bytes.is_empty() {
        return Ok(params);
    }
    let body = parse_resource(&bytes, body_format(req)?)?;
    let given = Params::from_resource(&body).map_err(ApiError::bad_request)?;
    let mut references = body["parameter"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter(|p| p["name"] == "patient")
        .map(|p| p["valueReference"]["reference"].as_str());
    for (name, value) in given.all() {
        let value = match (name, value) {
            ("patient", _) => references.next().flatten(),
            (_, v) => v,
        };
        let Some(value) = value else {
            return Err(ApiError::bad_request(format!(
                "{name}: this server takes $export parameters as text values (patient as a valueReference)"
            )));
        };
        params.push((name.to_string(), value.to_string()));
    }
    Ok(params)
}

async fn kick_off(
    state: web::Data<AppState>,
    level: Level,
    params: Vec<(String, String)>,
    req: &HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let prefer = req
        .headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"));
    if !prefer {
        return Err(ApiError::bad_request(
            "$export runs asynchronously: send Prefer: respond-async",
        ));
    }
    let request = ExportRequest::parse(level, &params, ctx.lenient).map_err(ExportError::from)?;
    let url = format!(
        "{}{}",
        state.base_url.trim_end_matches("/fhir"),
        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("")
    );
    let (exports, grant) = (state.exports.clone(), ctx.grant.clone());
    let id = web::block(move || exports.kick_off(&grant, &request, &url)).await??;
    Ok(HttpResponse::Accepted()
        .insert_header((
            "Content-Location",
            format!("{}/$export-status/{id}", state.base_url),
        ))
        .finish())
}

pub async fn status(
    state: web::Data<AppState>,
    id: web::Path<String>,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let exports = state.exports.clone();
    let status = web::block(move || exports.status(&ctx.grant, &id)).await??;
    Ok(match status {
        Status::InProgress(progress) => HttpResponse::Accepted()
            .insert_header(("X-Progress", progress))
            .insert_header(("Retry-After", RETRY_AFTER_SECS.to_string()))
            .finish(),
        Status::Done(manifest) => HttpResponse::Ok()
            .content_type("application/json")
            .body(manifest.to_string()),
        Status::Failed(why) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                Issue::error("exception", why),
            ));
        }
    })
}

pub async fn cancel(
    state: web::Data<AppState>,
    id: web::Path<String>,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let exports = state.exports.clone();
    web::block(move || exports.cancel(&ctx.grant, &id)).await??;
    Ok(HttpResponse::Accepted().finish())
}

/// A file of a finished export, streamed from its place.
pub async fn file(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let (id, name) = path.into_inner();
    let exports = state.exports.clone();
    let path = web::block(move || exports.file(&ctx.grant, &id, &name)).await??;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::from(ExportError::NotFound))?;
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(web::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+ndjson")
        .streaming(chunks))
}

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Bad(b) => ApiError::bad_request(b.0),
            ExportError::Forbidden(m) => ApiError::forbidden(m),
            ExportError::NotFound => ApiError::not_found("no such export, or not yours"),
            ExportError::Busy(m) => {
                let mut e = ApiError::busy(Issue::error("throttled", m), RETRY_AFTER_SECS * 5);
                e.status = StatusCode::TOO_MANY_REQUESTS;
                e
            }
            ExportError::Store(s) => s.into(),
        }
    }
}
