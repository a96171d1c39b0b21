//! The Subscription operations of the Backport IG: `$status` (where a subscription stands) and
//! `$events` (its queued events again, for a subscriber catching up after downtime).

use super::AppState;
use super::context::RequestContext;
use super::error::ApiError;
use super::path::{Id, QueryPairs};
use super::render;
use crate::auth::Grant;
use crate::auth::Interaction;
use crate::fhir::bundle::bundle;
use crate::store::StoreError;
use crate::subscriptions::delivery::shown;
use crate::subscriptions::notification::{self, About, Kind};
use crate::subscriptions::registry::{self, Subscriber};
use crate::subscriptions::subscription::Payload;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

/// Events one `$events` answer carries at most.
const MAX_EVENTS: i64 = 1000;
/// Events `$events` answers without a range: the latest ones.
const DEFAULT_EVENTS: i64 = 100;

/// The subscription, once the caller is known to be allowed to read its resource.
async fn readable(
    state: &web::Data<AppState>,
    ctx: &RequestContext,
    id: &str,
) -> Result<Subscriber, ApiError> {
    ctx.grant.reach(Interaction::Read, "Subscription")?;
    let store = state.store.clone();
    let sid = id.to_string();
    let version = web::block(move || store.current("Subscription", &sid)).await??;
    ctx.grant
        .check(Interaction::Read, "Subscription", id, || version.json())?;
    let store = state.store.clone();
    let sid = id.to_string();
    web::block(move || store.read(|c| registry::get(c, &sid)))
        .await??
        .ok_or_else(|| StoreError::NotFound {
            resource_type: "Subscription".into(),
            id: id.to_string(),
        })
        .map_err(ApiError::from)
}

fn about<'a>(base: &'a str, sub: &'a Subscriber) -> About<'a> {
    About {
        base,
        id: &sub.id,
        topic: &sub.topic,
        status: &sub.status,
        events_since_start: sub.events_since_start,
        error: sub.last_error.as_deref(),
        target: false,
    }
}

/// `GET [base]/Subscription/[id]/$status`: a searchset of the one SubscriptionStatus.
pub async fn status(
    state: web::Data<AppState>,
    Id(id): Id,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let sub = readable(&state, &ctx, id.as_str()).await?;
    let parameters = notification::status(&about(&state.base_url, &sub), Kind::QueryStatus, &[]);
    let entry = json!({
        "fullUrl": format!("urn:uuid:{}", parameters["id"].as_str().unwrap_or_default()),
        "resource": parameters,
        "search": {"mode": "match"}
    });
    let b = bundle("searchset", Some(1), Vec::new(), vec![entry]);
    render::fhir(StatusCode::OK, &b, &ctx)
}

/// `GET [base]/Subscription/[id]/$events?eventsSinceNumber=&eventsUntilNumber=&content=`:
/// the events again, as a `history` Bundle shaped like a notification (type `query-event`).
pub async fn events(
    state: web::Data<AppState>,
    Id(id): Id,
    QueryPairs(params): QueryPairs,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let number = |name: &str| -> Result<Option<i64>, ApiError> {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("{name} '{v}' is not a number")))
            })
            .transpose()
    };
    let since = number("eventsSinceNumber")?;
    let until = number("eventsUntilNumber")?;
    let content = match params.iter().find(|(k, _)| k == "content") {
        None => None,
        Some((_, v)) => Some(Payload::parse(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "content '{v}' is not one of empty, id-only, full-resource"
            ))
        })?),
    };
    let sub = readable(&state, &ctx, id.as_str()).await?;
    let until = until
        .unwrap_or(sub.events_since_start)
        .min(sub.events_since_start);
    // saturating: a client's number may be anything an i64 holds
    let since = since
        .unwrap_or(until.saturating_sub(DEFAULT_EVENTS - 1))
        .max(1);
    if until.saturating_sub(since) >= MAX_EVENTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_EVENTS} events at once: ask for eventsSinceNumber..eventsUntilNumber in parts"
        )));
    }
    let payload = content.unwrap_or_else(|| sub.payload());
    let base = state.base_url.clone();
    let store = state.store.clone();
    let b = web::block(move || {
        let events = store.read(|c| registry::events(c, &sub.id, since, until))?;
        let grant = Grant::stored(&sub.actor, &sub.scope, sub.patient.clone());
        let shown: Vec<_> = events
            .iter()
            .map(|e| shown(&store, &grant, &sub, payload, e))
            .collect::<Result<_, _>>()?;
        Ok::<_, StoreError>(notification::bundle(
            &about(&base, &sub),
            Kind::QueryEvent,
            &shown,
        ))
    })
    .await??;
    render::fhir(StatusCode::OK, &b, &ctx)
}
