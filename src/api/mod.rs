//! The HTTP surface (actix-web). One route table, grouped by who calls it; handlers are thin.

mod admin;
pub mod admission;
mod alerts_admin;
mod audit;
mod authorize;
pub mod body;
mod bulk;
mod bundle;
mod conditional;
mod console;
pub mod context;
mod crud;
pub mod drain;
pub mod error;
mod everything;
mod health;
mod history;
mod matching;
mod meta;
mod metadata;
mod mpi_admin;
mod mpi_decisions;
mod paging;
mod path;
mod provider_admin;
pub mod rate;
mod render;
mod routes_admin;
mod search;
mod smart;
mod subscription_ops;
mod terminology;
mod terminology_admin;
mod transactions;
mod validate;
mod webhook;
mod websocket;

pub use metadata::capability_statement;

use crate::auth::{Authority, Grant};
use crate::fhir::Issue;
use crate::store::Store;
use actix_web::HttpMessage;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpResponse, body::MessageBody, web};
use error::ApiError;
use std::collections::HashMap;
use std::sync::Arc;

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    pub base_url: String,
    pub authority: Arc<Authority>,
    pub insecure_dev: bool,
    /// The grant of every request under `--insecure-dev`.
    pub open_grant: Arc<Grant>,
    pub max_body_bytes: usize,
    /// The bytes of request bodies held at once, over all requests.
    pub body_budget: body::BodyBudget,
    pub max_bundle_entries: usize,
    /// Back pressure: the write requests carried out at once.
    pub writes: admission::Writes,
    /// The HL7v2 side (the exception queue's replay runs messages through it).
    pub hl7v2: crate::adapters::hl7v2::ingest::Inbound,
    /// The one ingest path every write goes through.
    pub ingest: crate::ingest::Ingest,
    /// The master patient index (`$match`).
    pub mpi: Arc<crate::identity::Mpi>,
    /// False when the server runs with `--no-mpi`: nothing is filed, so `$match` is refused.
    pub mpi_on: bool,
    /// The terminology service (`$lookup`, `$expand`, `$translate`, ...).
    pub terminology: Arc<crate::terminology::Terminology>,
    /// The source-of-truth rules on this process's ingest path (set anew by `PUT /admin/routes`).
    pub truth: Arc<crate::routing::truth::Truth>,
    /// Websocket subscribers' open sockets in this process.
    pub sockets: crate::subscriptions::websocket::Sockets,
    /// Request rates per address (`/auth/*`) and per client (the FHIR API).
    pub rates: Arc<rate::Rates>,
    /// The background tasks' states (`/ready`).
    pub tasks: crate::ops::tasks::TaskStates,
    /// Bulk Data exports (`$export`).
    pub exports: crate::bulk::Exports,
    /// The vendor sources this process reads, by name (their webhooks).
    pub sources: Arc<HashMap<String, Arc<crate::adapters::vendor::source::Source>>>,
}

pub fn routes(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    cfg.app_data(state)
        .route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .route("/metrics", web::get().to(health::metrics))
        .service(
            // in a scope: its fixed prefix is compared, where the bare pattern was a regular
            // expression run for every request of the routes after it
            web::scope("/adapters").service(
                web::resource("/{source}/webhook")
                    .wrap(private())
                    // an unauthenticated endpoint: a flood from one address costs a counter
                    .wrap(from_fn(rate::webhook_per_address))
                    .route(web::post().to(webhook::receive)),
            ),
        )
        .service(
            web::scope("/auth")
                .wrap(private())
                // before anything else: a flood from one address costs a counter, no more
                .wrap(from_fn(rate::per_address))
                // what a browser app calls from its own origin (SMART's JS client does)
                .service(
                    web::resource("/jwks")
                        .wrap(cors())
                        .route(web::get().to(smart::jwks)),
                )
                .service(
                    web::resource("/token")
                        .wrap(cors())
                        .route(web::post().to(smart::token)),
                )
                .service(
                    web::resource("/revoke")
                        .wrap(cors())
                        .route(web::post().to(smart::revoke)),
                )
                // pages the browser navigates to, and calls from EHRs and resource servers
                .route("/authorize", web::get().to(authorize::start))
                .route("/authorize", web::post().to(authorize::sign_in))
                .route("/consent", web::post().to(authorize::consent))
                .route("/launch", web::post().to(authorize::launch))
                .route("/introspect", web::post().to(smart::introspect))
                .default_service(web::to(unknown_route)),
        )
        .route("/ws/subscriptions", web::get().to(websocket::socket))
        // the dashboard's pages first: the `/admin` scope below takes every other `/admin` path
        .configure(console::configure)
        .service(
            web::scope("/admin")
                .wrap(private())
                .wrap(from_fn(require_auth))
                .route("/hl7v2/messages", web::get().to(admin::list))
                .route("/hl7v2/messages/{id}", web::get().to(admin::get))
                .route("/hl7v2/messages/{id}/replay", web::post().to(admin::replay))
                .route(
                    "/hl7v2/messages/{id}/release",
                    web::post().to(admin::release),
                )
                .route("/mpi", web::get().to(mpi_admin::status))
                .route("/mpi/reviews", web::get().to(mpi_admin::reviews))
                .route("/mpi/reviews/{id}", web::post().to(mpi_decisions::decide))
                .route(
                    "/mpi/reviews/{id}/undo",
                    web::post().to(mpi_decisions::undo),
                )
                .route("/mpi/merges", web::post().to(mpi_decisions::merge))
                .route("/mpi/merges", web::get().to(mpi_decisions::merges))
                .route(
                    "/mpi/merges/{id}/undo",
                    web::post().to(mpi_decisions::unmerge),
                )
                .route("/mpi/patients/{id}", web::get().to(mpi_admin::patient))
                .route(
                    "/terminology/unmapped",
                    web::get().to(terminology_admin::unmapped),
                )
                .route(
                    "/terminology/renormalise",
                    web::post().to(terminology_admin::renormalise),
                )
                .route("/routes", web::get().to(routes_admin::current))
                .route("/routes", web::put().to(routes_admin::put))
                .route("/routes/history", web::get().to(routes_admin::history))
                .route("/routes/history/{version}", web::get().to(routes_admin::at))
                .route("/transactions", web::get().to(transactions::search))
                .route("/alerts", web::get().to(alerts_admin::list))
                .route("/alerts/rules", web::get().to(alerts_admin::rules))
                .route("/alerts/rules", web::put().to(alerts_admin::put_rules))
                .route("/outbound", web::get().to(routes_admin::outbound))
                .route("/outbound/summary", web::get().to(routes_admin::summary))
                .route("/outbound/{seq}", web::get().to(routes_admin::message))
                .route(
                    "/outbound/{seq}/replay",
                    web::post().to(routes_admin::replay),
                )
                .route("/providers", web::get().to(provider_admin::status))
                .route("/providers/reviews", web::get().to(provider_admin::reviews))
                .route(
                    "/providers/reviews/{id}",
                    web::post().to(provider_admin::decide),
                )
                .route(
                    "/providers/reviews/{id}/undo",
                    web::post().to(provider_admin::undo),
                )
                .route(
                    "/providers/{type}/{id}",
                    web::get().to(provider_admin::record),
                ),
        )
        .service(
            terminology::routes(
                web::scope("/fhir")
                    // inside require_auth: a client is known by its token
                    .wrap(from_fn(rate::per_client))
                    .wrap(from_fn(require_auth))
                    .wrap(from_fn(context::correlate))
                    // on every answer, errors and refusals included
                    .wrap(private())
                    // every request counted and timed, refusals included
                    .wrap(from_fn(crate::ops::metrics::http::record))
                    // every request in the audit trail once (writes by their own rows)
                    .wrap(from_fn(crate::ops::audit::http::record))
                    // outermost: a preflight is answered before authentication, and a 401 carries
                    // the headers that let the app's script read it
                    .wrap(cors())
                    .route("/metadata", web::get().to(metadata::metadata))
                    .route(
                        "/.well-known/smart-configuration",
                        web::get().to(smart::smart_configuration),
                    )
                    // before `{type}/{id}`, which the path would otherwise match
                    .route("/Patient/$match", web::post().to(matching::patient))
                    // the audit trail: the server's own record, read and searched only
                    .route("/AuditEvent", web::get().to(audit::search))
                    .route("/AuditEvent", web::route().to(audit::refused))
                    .service(
                        web::resource("/AuditEvent/{id}")
                            .route(web::get().to(audit::read))
                            .route(web::route().to(audit::refused)),
                    )
                    // the type and instance interactions next, before the operations and
                    // keywords: actix tries a request against each route before its own, a
                    // regular expression each, and with these last a read paid some thirty
                    // (a sixth of its CPU). A segment starting `$` or `_` is an operation or a
                    // keyword (`$validate`, `_history`), never a type or an id: those go on.
                    .service(
                        web::resource(INSTANCE)
                            .route(web::get().to(crud::read))
                            .route(web::put().to(crud::update))
                            .route(web::patch().to(crud::patch))
                            .route(web::delete().to(crud::delete))
                            .default_service(web::to(unknown_route)),
                    )
                    .service(
                        web::resource(TYPE)
                            .route(web::get().to(search::get))
                            .route(web::post().to(crud::create))
                            .route(web::put().to(conditional::update))
                            .route(web::patch().to(conditional::patch))
                            .route(web::delete().to(conditional::delete))
                            .default_service(web::to(unknown_route)),
                    ),
            )
            .route("", web::post().to(bundle::process))
            .route("/", web::post().to(bundle::process))
            .route("", web::get().to(search::system_get))
            .route("/", web::get().to(search::system_get))
            .route("/_search", web::post().to(search::system_post))
            .route("/_history", web::get().to(history::system))
            .route("/$meta", web::get().to(meta::of_system))
            .route("/$export", web::get().to(bulk::system))
            .route("/$export", web::post().to(bulk::system))
            .route("/$export-status/{id}", web::get().to(bulk::status))
            .route("/$export-status/{id}", web::delete().to(bulk::cancel))
            .route("/$export-file/{id}/{name}", web::get().to(bulk::file))
            .route("/Patient/$export", web::get().to(bulk::patient))
            .route("/Patient/$export", web::post().to(bulk::patient))
            .route("/Group/{id}/$export", web::get().to(bulk::group))
            .route("/Group/{id}/$export", web::post().to(bulk::group))
            .route("/{type}/_search", web::post().to(search::post))
            .route("/{type}/$validate", web::post().to(validate::type_level))
            .route("/{type}/{id}/$validate", web::post().to(validate::instance))
            .route("/{type}/$meta", web::get().to(meta::of_type))
            .route("/{type}/{id}/$meta", web::get().to(meta::of_instance))
            .route("/{type}/{id}/$meta", web::post().to(meta::of_instance))
            .route("/{type}/{id}/$meta-add", web::post().to(meta::add))
            .route("/{type}/{id}/$meta-delete", web::post().to(meta::delete))
            .route("/{type}/_history", web::get().to(history::of_type))
            .route("/{type}/{id}/_history", web::get().to(history::of_instance))
            .route("/{type}/{id}/_history/{vid}", web::get().to(crud::vread))
            .route(
                "/Subscription/{id}/$status",
                web::get().to(subscription_ops::status),
            )
            .route(
                "/Subscription/{id}/$events",
                web::get().to(subscription_ops::events),
            )
            .route(
                "/Subscription/{id}/$get-ws-binding-token",
                web::route().to(websocket::binding),
            )
            .route(
                "/Patient/{id}/$everything",
                web::get().to(everything::patient),
            )
            .route(
                "/{compartment}/{id}/{type}",
                web::get().to(search::compartment),
            )
            .route(
                "/{compartment}/{id}/{type}/_search",
                web::post().to(search::compartment_post),
            )
            .default_service(web::to(unknown_route)),
        )
        .default_service(web::to(unknown_route));
}

/// `/{type}` and `/{type}/{id}`, where neither segment is an operation (`$`) or a keyword (`_`).
const TYPE: &str = "/{type:[^/$_][^/]*}";
const INSTANCE: &str = "/{type:[^/$_][^/]*}/{id:[^/$_][^/]*}";

/// What every answer that may carry patient data or credentials says to caches and browsers:
/// keep no copy (a shared or disk cache would hold PHI), and take the content type as sent
/// (never guess a JSON body to be HTML). A handler that set its own `Cache-Control` keeps it.
fn private() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add(("Cache-Control", "no-store"))
        .add(("X-Content-Type-Options", "nosniff"))
}

/// Cross-origin access for browser apps (SMART apps run on their own origin). Any origin may
/// call, as with any bearer-token API: no cookie or other ambient credential is honoured, so
/// a page can only act with a token it already holds.
fn cors() -> actix_cors::Cors {
    use actix_web::http::{Method, header};
    actix_cors::Cors::default()
        .allow_any_origin()
        .send_wildcard()
        .allowed_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::HeaderName::from_static("if-none-exist"),
            header::HeaderName::from_static("prefer"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LAST_MODIFIED,
            header::CONTENT_LOCATION,
            header::WWW_AUTHENTICATE,
            header::HeaderName::from_static("x-request-id"),
        ])
        .max_age(3600)
}

async fn unknown_route(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let path = req.path();
    let is_fhir = path.starts_with("/fhir/");
    let known_type = path
        .trim_start_matches("/fhir/")
        .split('/')
        .next()
        .is_some_and(|t| crate::fhir::definitions::Definitions::get().is_resource_type(t));
    if is_fhir && known_type {
        let msg = format!("{} {path} is not a supported interaction", req.method());
        Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Issue::error("not-supported", msg),
        ))
    } else {
        Err(ApiError::not_found(format!(
            "no such endpoint: {} {path}",
            req.method()
        )))
    }
}

/// Security on by default: every FHIR request but the public ones (CapabilityStatement, SMART
/// configuration) needs a valid bearer token, whose grant the handlers then check against each
/// interaction. `--insecure-dev` serves everything to everyone, and says so loudly at start.
async fn require_auth(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(actix_web::error::ErrorInternalServerError(
            "no application state",
        ));
    };
    let public = matches!(
        req.path(),
        "/fhir/metadata" | "/fhir/.well-known/smart-configuration"
    );
    let grant = if state.insecure_dev {
        Ok(state.open_grant.clone())
    } else if public {
        Ok(Arc::new(Grant::public()))
    } else {
        match bearer_token(req.headers()) {
            None => Err(ApiError::token_required()),
            Some(token) => state
                .authority
                .authenticate(token)
                .await
                .map_err(|e| ApiError::unauthorized(e.to_string())),
        }
    };
    match grant {
        Ok(grant) => {
            req.extensions_mut().insert(grant);
            next.call(req)
                .await
                .map(ServiceResponse::map_into_left_body)
        }
        Err(err) => {
            let response: HttpResponse = actix_web::ResponseError::error_response(&err);
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive).
pub(crate) fn bearer_token(headers: &actix_web::http::header::HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
