//! The terminology operations over HTTP (R4 signatures, GET and POST, type and instance
//! level): each handler reads the request's parameters, calls the operation of
//! `terminology::ops` and renders what it answers. The token must allow reading the type the
//! operation is on.

use super::AppState;
use super::context::RequestContext;
use super::crud::resource_body;
use super::error::ApiError;
use super::render;
use crate::auth::Interaction;
use crate::fhir::Issue;
use crate::fhir::parameters::Params;
use crate::terminology::{TermError, Terminology, ops};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;
use std::sync::Arc;

impl From<TermError> for ApiError {
    fn from(e: TermError) -> Self {
        match e {
            TermError::NotFound(t) => ApiError::not_found(t),
            TermError::Invalid(t) => ApiError::bad_request(t),
            TermError::TooCostly(t) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Issue::error("too-costly", t),
            ),
            TermError::Store(t) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Issue::error("transient", t),
            ),
            TermError::Cold => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Issue::error("transient", "the terminology was not ready: try again"),
            ),
        }
    }
}

type Operation = fn(&Terminology, &Params, Option<&str>) -> Result<Value, TermError>;

/// The operation `name` on `rtype` (at the instance `id` when given).
async fn run(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
    (rtype, id): (&str, Option<String>),
    (op, cheap): (Operation, bool),
) -> Result<HttpResponse, ApiError> {
    ctx.grant.reach(Interaction::Read, rtype)?;
    let params = match *req.method() {
        Method::GET => {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
                .map_err(|e| ApiError::bad_request(format!("the query does not decode: {e}")))?;
            Params::from_query(pairs)
        }
        _ => Params::from_resource(&resource_body(&state, &req, payload).await?),
    }
    .map_err(ApiError::bad_request)?;
    let term: Arc<Terminology> = state.terminology.clone();
    // a cheap operation that needs only what is built is answered here; one that must read
    // the store or build, and `$expand` (whose pages may be long), on a blocking thread
    let inline = match cheap {
        true => Terminology::warm(|| op(&term, &params, id.as_deref())),
        false => None,
    };
    let answer = match inline {
        Some(answer) => answer?,
        None => web::block(move || op(&term, &params, id.as_deref())).await??,
    };
    render::fhir(StatusCode::OK, &answer, &ctx)
}

/// The instance's id from the path (`/{type}/{id}/$op`), when there is one.
fn instance(req: &HttpRequest) -> Option<String> {
    req.match_info().get("id").map(str::to_string)
}

/// A handler for operation `$op` on `$rtype`, at the type or the instance level.
macro_rules! operation {
    ($name:ident, $rtype:literal, $op:path, $cheap:literal) => {
        pub async fn $name(
            state: web::Data<AppState>,
            req: HttpRequest,
            payload: web::Payload,
            ctx: RequestContext,
        ) -> Result<HttpResponse, ApiError> {
            let id = instance(&req);
            run(state, req, payload, ctx, ($rtype, id), ($op, $cheap)).await
        }
    };
}

operation!(lookup, "CodeSystem", ops::lookup, true);
operation!(
    code_system_validate,
    "CodeSystem",
    ops::validate_in_system,
    true
);
operation!(subsumes, "CodeSystem", ops::subsumes, true);
operation!(expand, "ValueSet", ops::expand, false);
operation!(
    value_set_validate,
    "ValueSet",
    ops::validate_in_value_set,
    true
);
operation!(translate, "ConceptMap", ops::translate, true);

/// The routes, type and instance level, GET and POST: registered before the generic
/// `/{type}/{id}` routes, which would take `$expand` for an id.
pub fn routes<T>(scope: actix_web::Scope<T>) -> actix_web::Scope<T>
where
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Error = actix_web::Error,
            InitError = (),
        >,
{
    macro_rules! both {
        ($scope:expr, $path:expr, $handler:expr) => {
            $scope
                .route($path, web::get().to($handler))
                .route($path, web::post().to($handler))
        };
    }
    let scope = both!(scope, "/CodeSystem/$lookup", lookup);
    let scope = both!(scope, "/CodeSystem/$validate-code", code_system_validate);
    let scope = both!(
        scope,
        "/CodeSystem/{id}/$validate-code",
        code_system_validate
    );
    let scope = both!(scope, "/CodeSystem/$subsumes", subsumes);
    let scope = both!(scope, "/CodeSystem/{id}/$subsumes", subsumes);
    let scope = both!(scope, "/ValueSet/$expand", expand);
    let scope = both!(scope, "/ValueSet/{id}/$expand", expand);
    let scope = both!(scope, "/ValueSet/$validate-code", value_set_validate);
    let scope = both!(scope, "/ValueSet/{id}/$validate-code", value_set_validate);
    let scope = both!(scope, "/ConceptMap/$translate", translate);
    both!(scope, "/ConceptMap/{id}/$translate", translate)
}
