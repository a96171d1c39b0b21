//! Graceful shutdown of the HTTP side. Requests in hand are counted; once shutdown starts, a
//! request that arrives (on a connection kept alive) is answered 503 with `Retry-After` and
//! `Connection: close`, and the server stops when the last request in hand has its answer (or
//! at the deadline). Waiting for connections to close instead would wait for every idle
//! keep-alive connection a proxy holds open.
//!
//! A middleware of its own (not `from_fn`, which boxes every request's future and body): it
//! wraps every request of the server, so its cost is paid by every read.

use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::{Error, HttpResponse};
use futures_util::future::Either;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
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

    /// Count a request in; `None` when shutdown has started (it is counted out at once).
    /// Counted before `closing` is read: a request that `close` does not see as in hand
    /// sees `closing`.
    fn admit(self: &Arc<Self>) -> Option<InHand> {
        self.in_hand.fetch_add(1, Ordering::SeqCst);
        let in_hand = InHand(self.clone());
        (!self.closing.load(Ordering::SeqCst)).then_some(in_hand)
    }
}

fn refusal() -> HttpResponse {
    let outcome = crate::fhir::operation_outcome(&[crate::fhir::Issue::error(
        "transient",
        "the server is shutting down: send the request again (to another node, or shortly)",
    )]);
    HttpResponse::ServiceUnavailable()
        .insert_header(("Retry-After", "1"))
        .insert_header(("Connection", "close"))
        .content_type("application/fhir+json")
        .body(outcome.to_string())
}

/// The middleware (`App::wrap(Counting(drain))`).
pub struct Counting(pub Arc<Drain>);

impl<S, B> Transform<S, ServiceRequest> for Counting
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = CountingService<S>;
    type InitError = ();
    type Future = Ready<Result<CountingService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(CountingService {
            service,
            drain: self.0.clone(),
        }))
    }
}

pub struct CountingService<S> {
    service: S,
    drain: Arc<Drain>,
}

impl<S, B> Service<ServiceRequest> for CountingService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Either<Counted<S::Future>, Ready<Result<Self::Response, Error>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        match self.drain.admit() {
            Some(in_hand) => Either::Left(Counted {
                inner: self.service.call(req),
                in_hand: Some(in_hand),
            }),
            None => {
                let response = req.into_response(refusal()).map_into_right_body();
                Either::Right(ready(Ok(response)))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's future, counted in hand until it has its answer.
    pub struct Counted<F> {
        #[pin]
        inner: F,
        in_hand: Option<InHand>,
    }
}

impl<F, B> Future for Counted<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        this.in_hand.take();
        Poll::Ready(out.map(ServiceResponse::map_into_left_body))
    }
}
