//! Graceful shutdown of the HTTP side. Requests in hand are counted; once shutdown starts, a
//! request that arrives (on a connection kept alive) is answered 503 with `Retry-After` and
//! `Connection: close`, and the server stops when the last request in hand has its answer (or
//! at the deadline). Waiting for connections to close instead would wait for every idle
//! keep-alive connection a proxy holds open.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Drain {
    in_hand: AtomicUsize,
    closing: AtomicBool,
    idle: Notify,
}

/// Counts a request while it is in hand.
struct InHand(Arc<Drain>);

impl Drop for InHand {
    fn drop(&mut self) {
        if self.0.in_hand.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Drain {
    /// Refuse new requests from now on, and wait until none is in hand (or `deadline`).
    /// True when every request in hand finished.
    pub async fn close(&self, deadline: Duration) -> bool {
        self.closing.store(true, Ordering::SeqCst);
        let finished = async {
            loop {
                let idle = self.idle.notified();
                if self.in_hand.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(deadline, finished).await.is_ok()
    }
}

/// The middleware: count the request, or refuse it when shutdown has started.
pub async fn count(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(drain) = req
        .app_data::<web::Data<Drain>>()
        .map(|d| d.clone().into_inner())
    else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    drain.in_hand.fetch_add(1, Ordering::SeqCst);
    let in_hand = InHand(drain.clone());
    if drain.closing.load(Ordering::SeqCst) {
        drop(in_hand);
        let response = HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .insert_header(("Connection", "close"))
            .content_type("application/fhir+json")
            .body(
                serde_json::to_string(&crate::fhir::operation_outcome(&[crate::fhir::Issue::error(
                    "transient",
                    "the server is shutting down: send the request again (to another node, or shortly)",
                )]))
                .unwrap_or_default(),
            );
        return Ok(req.into_response(response));
    }
    let response = next.call(req).await;
    drop(in_hand);
    response.map(ServiceResponse::map_into_boxed_body)
}
