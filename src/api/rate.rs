//! Request rates, as settings: per address on `/auth/*` (sign-in pages and the token endpoint:
//! what brute force and floods aim at) and per client on the FHIR API (a token's client, or
//! its subject), each a steady rate with bursts of twice that. Past it a request gets 429 with
//! `Retry-After` and costs the server nothing more. A batch or transaction is charged one unit
//! per entry: a Bundle of a thousand reads is a thousand requests' work.

use super::AppState;
use super::error::ApiError;
use crate::auth::Grant;
use crate::fhir::Issue;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, web};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// One keyed rate; `None` when the setting is 0 (no limit).
pub struct Rate(Option<DefaultKeyedRateLimiter<String>>);

impl Rate {
    pub fn per_second(n: u32) -> Rate {
        Rate(NonZeroU32::new(n).map(|n| {
            let burst = n.saturating_mul(NonZeroU32::new(2).expect("2 is not 0"));
            RateLimiter::keyed(Quota::per_second(n).allow_burst(burst))
        }))
    }

    /// Take `units` from `key`'s allowance, or say how long until it has them.
    pub fn charge(&self, key: &str, units: u32) -> Result<(), Duration> {
        let Some(limiter) = &self.0 else {
            return Ok(());
        };
        let Some(units) = NonZeroU32::new(units) else {
            return Ok(());
        };
        let key = key.to_string();
        let now = || DefaultClock::default().now();
        match limiter.check_key_n(&key, units) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(now())),
            // more units than a whole burst (a large Bundle): it goes when the allowance is
            // full, and empties it
            Err(governor::InsufficientCapacity(burst)) => {
                let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
                match limiter.check_key_n(&key, burst) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(not_until)) => Err(not_until.wait_time_from(now())),
                    Err(_) => Err(Duration::from_secs(1)),
                }
            }
        }
    }

    /// Forget keys whose allowance is full again (called now and then: keys are addresses and
    /// clients, which come and go).
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.0 {
            limiter.retain_recent();
        }
    }
}

/// The rates every request is held to.
pub struct Rates {
    pub auth_per_address: Rate,
    /// Vendors' webhook deliveries, per address: a busy system pushes far more often than
    /// anyone signs in.
    pub webhook_per_address: Rate,
    pub api_per_client: Rate,
}

impl Rates {
    /// A request's `units` of FHIR API work for the client of `grant`.
    pub fn charge_client(&self, grant: &Grant, units: u32) -> Result<(), ApiError> {
        let client = grant.client_id.as_deref().unwrap_or(&grant.subject);
        self.api_per_client
            .charge(client, units)
            .map_err(|wait| too_many(wait, "this client"))
    }
}

fn too_many(wait: Duration, whose: &str) -> ApiError {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        Issue::error(
            "throttled",
            format!(
                "{whose} is sending requests faster than this server's limit; try again in {seconds} s"
            ),
        ),
    );
    e.headers.push(("Retry-After", seconds.to_string()));
    e
}

fn state(req: &ServiceRequest) -> Option<web::Data<AppState>> {
    req.app_data::<web::Data<AppState>>().cloned()
}

/// `/auth/*`: per address (the connection's peer; a forwarded-for header could claim any).
pub async fn per_address(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    by_address(req, next, |r| &r.auth_per_address).await
}

/// `/adapters/{source}/webhook`: per address, at the webhook rate.
pub async fn webhook_per_address(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    by_address(req, next, |r| &r.webhook_per_address).await
}

async fn by_address(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    rate: fn(&Rates) -> &Rate,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let ip = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let verdict = match state(&req) {
        Some(s) => rate(&s.rates).charge(&ip, 1),
        None => Ok(()),
    };
    match verdict {
        Ok(()) => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
        Err(wait) => {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            let response = HttpResponse::TooManyRequests()
                .insert_header(("retry-after", seconds.to_string()))
                .insert_header(("cache-control", "no-store"))
                .json(serde_json::json!({
                    "error": "invalid_request",
                    "error_description": format!("too many requests from this address; try again in {seconds} s"),
                }));
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// The FHIR API: per client, once the token is known (this runs inside `require_auth`).
pub async fn per_client(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let grant = req.extensions().get::<Arc<Grant>>().cloned();
    // a batch or transaction is charged by its entries, once they are counted
    let is_bundle =
        req.method() == actix_web::http::Method::POST && matches!(req.path(), "/fhir" | "/fhir/");
    let verdict = match (state(&req), grant) {
        _ if is_bundle => Ok(()),
        (Some(s), Some(g)) => s.rates.charge_client(&g, 1),
        _ => Ok(()),
    };
    match verdict {
        Ok(()) => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
        Err(e) => {
            let response: HttpResponse = actix_web::ResponseError::error_response(&e);
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_allows_its_burst_then_says_how_long_to_wait() {
        let r = Rate::per_second(5);
        for _ in 0..10 {
            assert!(r.charge("a", 1).is_ok(), "a burst of twice the rate");
        }
        let wait = r.charge("a", 1).unwrap_err();
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
        assert!(r.charge("b", 1).is_ok(), "each key has its own allowance");
        assert!(
            r.charge("b", 50).is_err(),
            "more than a burst waits for a full allowance"
        );
        assert!(r.charge("c", 50).is_ok(), "which it then empties");
        assert!(r.charge("c", 1).is_err());
        let off = Rate::per_second(0);
        assert!((0..1000).all(|_| off.charge("a", 100).is_ok()));
    }
}
