//! `$validate` (`POST [type]/$validate`, `POST [type]/[id]/$validate`): the checks a write
//! would make, on the write's own path up to the commit (`Writer::accept`: structure, codes,
//! the writers' rules), and nothing stored. The body is the resource, or a Parameters with
//! `resource`, `mode` (create, update, delete) and `profile` (a StructureDefinition's URL,
//! checked by `fhir::profile` when this server holds it). As the operation is defined, the
//! answer is 200 with an OperationOutcome whether or not the resource is valid; 4xx means the
//! validation itself could not be done.

use super::AppState;
use super::body::{parse_resource, read_limited};
use super::context::{RequestContext, body_format};
use super::error::ApiError;
use super::path::{Instance, TypeName};
use super::render;
use crate::auth::Interaction;
use crate::fhir::parameters::Params;
use crate::fhir::search::filter::parse_filter;
use crate::fhir::{Issue, profile};
use crate::store::search::{Scope, SearchSpec, search};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

/// What a `$validate` request asks.
struct Asked {
    resource: Option<Value>,
    mode: Option<String>,
    profile: Option<String>,
}

pub async fn type_level(
    state: web::Data<AppState>,
    TypeName(rtype): TypeName,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let asked = read(&state, &req, payload).await?;
    validate(state, rtype, None, asked, ctx).await
}

pub async fn instance(
    state: web::Data<AppState>,
    Instance { rtype, id }: Instance,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let asked = read(&state, &req, payload).await?;
    validate(state, rtype, Some(id.to_string()), asked, ctx).await
}

/// The request's resource, mode and profile, from the body (a resource or a Parameters) and
/// the query string.
async fn read(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Asked, ApiError> {
    let query: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let query = Params::from_query(query).map_err(ApiError::bad_request)?;
    let bytes = read_limited(req, payload, state.max_body_bytes).await?;
    let body = match bytes.is_empty() {
        true => None,
        false => Some(parse_resource(&bytes, body_format(req)?)?),
    };
    let mut asked = Asked {
        mode: query.text("mode").map(str::to_string),
        profile: query.text("profile").map(str::to_string),
        resource: None,
    };
    match body {
        Some(b) if b["resourceType"] == "Parameters" && b["parameter"].is_array() => {
            let p = Params::from_resource(&b).map_err(ApiError::bad_request)?;
            asked.resource = p.json("resource").cloned();
            asked.mode = asked.mode.or(p.text("mode").map(str::to_string));
            asked.profile = asked.profile.or(p.text("profile").map(str::to_string));
        }
        other => asked.resource = other,
    }
    Ok(asked)
}

async fn validate(
    state: web::Data<AppState>,
    rtype: String,
    id: Option<String>,
    asked: Asked,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let mode = asked.mode.as_deref().unwrap_or(match id {
        Some(_) => "update",
        None => "create",
    });
    let interaction = match mode {
        "create" => Interaction::Create,
        "update" => Interaction::Update,
        "delete" => Interaction::Delete,
        "profile" => Interaction::Read,
        other => {
            return Err(ApiError::bad_request(format!(
                "mode '{other}' is none of create, update, delete, profile"
            )));
        }
    };
    ctx.grant.reach(interaction, &rtype)?;
    let mut issues: Vec<Issue> = Vec::new();
    if mode == "delete" {
        // nothing in this server refuses a delete that the token allows, once it exists
        let Some(id) = id else {
            return Err(ApiError::bad_request(
                "mode delete needs a resource: [type]/[id]/$validate",
            ));
        };
        let (store, rt, i) = (state.store.clone(), rtype.clone(), id.clone());
        web::block(move || store.current(&rt, &i)).await??;
        return answer(&ctx, &issues);
    }
    let Some(resource) = asked.resource else {
        return Err(ApiError::bad_request(
            "nothing to validate: send the resource, or a Parameters with 'resource'",
        ));
    };
    if resource["resourceType"].as_str() != Some(rtype.as_str()) {
        issues.push(Issue::error(
            "invalid",
            format!(
                "the resource is a {}, not a {rtype}",
                resource["resourceType"]
            ),
        ));
        return answer(&ctx, &issues);
    }
    if let (Some(id), "update") = (&id, mode)
        && resource["id"].as_str() != Some(id.as_str())
    {
        issues.push(
            Issue::error(
                "invalid",
                format!("an update of {rtype}/{id} must carry id '{id}'"),
            )
            .at(format!("{rtype}.id")),
        );
    }
    let writer = ctx.writer(&state.ingest);
    let (lenient, to_check) = (ctx.lenient, resource.clone());
    let rt = rtype.clone();
    let accepted = web::block(move || writer.accept(to_check, &rt, lenient)).await?;
    match accepted {
        Ok(a) => issues.extend(a.warnings),
        Err(e) => issues.extend(ApiError::from(e).issues),
    }
    // what the token may write: a write outside its patient's compartment would be refused
    let target = id.as_deref().unwrap_or("");
    if let Err(denied) = ctx.grant.check(interaction, &rtype, target, || &resource) {
        issues.push(Issue::error("forbidden", denied.0));
    }
    if let Some(url) = asked.profile.filter(|u| !is_base_profile(u, &rtype)) {
        match stored_profile(&state, &url).await? {
            Some(p) => issues.extend(profile::check(&resource, &p)),
            None => issues.push(Issue::error(
                "not-found",
                format!("profile {url} is not known here: store its StructureDefinition first"),
            )),
        }
    }
    answer(&ctx, &issues)
}

fn is_base_profile(url: &str, rtype: &str) -> bool {
    url.split('|').next() == Some(&format!("http://hl7.org/fhir/StructureDefinition/{rtype}"))
}

/// The StructureDefinition whose `url` is `url` (`url|version` names a version), if stored.
async fn stored_profile(state: &AppState, url: &str) -> Result<Option<Value>, ApiError> {
    let store = state.store.clone();
    let (url, version) = match url.split_once('|') {
        Some((u, v)) => (u.to_string(), Some(v.to_string())),
        None => (url.to_string(), None),
    };
    let page = web::block(move || {
        let filter = parse_filter("StructureDefinition", "url", &url)
            .map_err(|e| crate::store::StoreError::Database(e.message))?;
        let scope = [(
            "StructureDefinition".to_string(),
            filter.into_iter().collect(),
        )];
        let spec = SearchSpec {
            scope: Scope::Types(&scope),
            sort: &[],
            count: 20,
            cursor: None,
            total: false,
        };
        store.read(|c| {
            search(c, &spec).map_err(|e| crate::store::StoreError::Database(e.to_string()))
        })
    })
    .await??;
    Ok(page
        .versions
        .iter()
        .map(|v| v.json())
        .find(|sd| version.is_none() || sd["version"].as_str() == version.as_deref()))
}

/// 200 and the OperationOutcome: what a write would have been told (an "all ok" issue when
/// there is nothing to say).
fn answer(ctx: &RequestContext, issues: &[Issue]) -> Result<HttpResponse, ApiError> {
    render::fhir(StatusCode::OK, &crate::fhir::operation_outcome(issues), ctx)
}
