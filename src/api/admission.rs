//! Back pressure on writes: at most so many write requests are carried out at once. One over
//! the bound is answered at once with 503 and `Retry-After`, rather than queued without bound
//! behind the database's one writer (SQLite) or its connection pool, where it would hold its
//! body in memory and time out on the client anyway.

use super::error::ApiError;
use crate::fhir::Issue;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Seconds a refused client is told to wait.
const RETRY_AFTER_SECS: u32 = 1;

#[derive(Clone)]
pub struct Writes {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Writes {
    pub fn new(max: usize) -> Writes {
        Writes {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A place for one write, held until it is dropped; 503 when none is free.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            let msg = format!(
                "the server is carrying out {} writes already, its most at once: try again shortly",
                self.max
            );
            ApiError::busy(Issue::error("transient", msg), RETRY_AFTER_SECS)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;

    #[test]
    fn a_write_over_the_bound_is_refused_until_one_finishes() {
        let writes = Writes::new(2);
        let (a, _b) = (writes.admit().unwrap(), writes.admit().unwrap());
        let refused = writes.admit().expect_err("a third write is refused");
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.headers.contains(&("Retry-After", "1".to_string())));
        drop(a);
        assert!(writes.admit().is_ok());
    }
}
