//! One target's sender: its queue sent in order over one MLLP connection, the next message
//! only after the last one's ACK. A refusal (AE, AR) sends the message to the exception queue
//! and the queue goes on; no answer (the target down, a timeout) holds the queue and the same
//! message is tried again after a back-off that doubles up to a ceiling, so a target that was
//! down receives what it missed, in order, when it returns.

use super::config::{Channel, Target};
use super::lease;
use super::queue::{self, Outcome, Queued};
use super::render::{Rendered, render};
use crate::adapters::hl7v2::out::client::{Link, LinkError};
use crate::fhir::resource::now_micros;
use crate::store::{Store, StoreError};
use crate::subscriptions::dispatch::SamePerson;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How many queued messages are read at a time.
const WINDOW: i64 = 64;
/// How long the sender sleeps when nothing woke it.
const TICK: Duration = Duration::from_millis(500);

/// What every sender shares.
#[derive(Clone)]
pub struct Senders {
    pub store: Store,
    pub persons: Option<Arc<dyn SamePerson>>,
    /// The longest wait between two tries of a message (the back-off's ceiling).
    pub retry_max: Duration,
    /// This process, as lease holder (PostgreSQL: one process sends for a target).
    pub owner: String,
}

/// Send `target`'s queue for ever; `wake` is notified when messages are queued.
pub async fn run(s: Senders, target: Target, wake: Arc<Notify>) {
    let Channel::Mllp {
        address,
        ack_timeout_ms,
    } = target.channel.clone();
    let timeout = Duration::from_millis(ack_timeout_ms.max(1));
    let mut link: Option<Link> = None;
    loop {
        match lease::hold(&s.store, &target.name, &s.owner).await {
            Ok(true) => {}
            Ok(false) => {
                // another process sends for this target
                link = None;
                tokio::time::sleep(lease::RETRY).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(target = %target.name, error = %e, "the target's lease cannot be taken; will retry");
                tokio::time::sleep(TICK).await;
                continue;
            }
        }
        let (store, name) = (s.store.clone(), target.name.clone());
        let window =
            tokio::task::spawn_blocking(move || store.read(|c| queue::next(c, &name, WINDOW)))
                .await;
        let window = match window {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => {
                tracing::warn!(target = %target.name, error = %e, "the target's queue cannot be read; will retry");
                tokio::time::sleep(TICK).await;
                continue;
            }
            Err(_) => return,
        };
        if window.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
            continue;
        }
        for q in window {
            let wait = q.next_attempt_at - now_micros();
            if wait > 0 {
                // the head waits for its retry, and so does everything behind it
                tokio::time::sleep(Duration::from_micros(wait as u64)).await;
                break;
            }
            match send_one(&s, &target, &address, timeout, &mut link, &q).await {
                Ok(true) => {}
                // held: read the queue again (its head now has a retry time)
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(target = %target.name, error = %e, "recording an outbound message failed; will retry");
                    tokio::time::sleep(TICK).await;
                    break;
                }
            }
        }
    }
}

/// Render, send and record one message. `Ok(false)`: the queue is held (no answer).
async fn send_one(
    s: &Senders,
    target: &Target,
    address: &str,
    timeout: Duration,
    link: &mut Option<Link>,
    q: &Queued,
) -> Result<bool, StoreError> {
    let rendered = {
        let (store, persons, t, q) = (
            s.store.clone(),
            s.persons.clone(),
            target.clone(),
            q.clone(),
        );
        tokio::task::spawn_blocking(move || store.read(|c| render(c, &q, &t, persons.as_deref())))
            .await
            .map_err(|e| StoreError::Database(format!("render task: {e}")))??
    };
    let (kind, text) = match rendered {
        Ok(Rendered::Message { kind, text }) => (kind, text),
        Ok(Rendered::Nothing(why)) => {
            record(s, q.seq, None, Outcome::Skipped { why }).await?;
            return Ok(true);
        }
        Err(why) => {
            tracing::warn!(target = %target.name, message = q.seq, error = %why, "outbound message cannot be made: to the exception queue");
            record(
                s,
                q.seq,
                None,
                Outcome::Failed {
                    ack: None,
                    error: why,
                },
            )
            .await?;
            return Ok(true);
        }
    };
    let answer = match link.as_mut() {
        Some(l) => l.exchange(&text, &q.control_id(), timeout).await,
        None => match Link::connect(address, timeout).await {
            Ok(l) => {
                link.insert(l)
                    .exchange(&text, &q.control_id(), timeout)
                    .await
            }
            Err(e) => Err(e),
        },
    };
    let outcome = match answer {
        Ok(ack) if ack.accepted() => Outcome::Sent { ack: ack.code },
        Ok(ack) => {
            tracing::warn!(target = %target.name, message = q.seq, ack = %ack.code, error = ?ack.error, "target refused a message: to the exception queue");
            Outcome::Failed {
                error: ack
                    .error
                    .unwrap_or_else(|| format!("the target answered {}", ack.code)),
                ack: Some(ack.code),
            }
        }
        Err(e) => {
            *link = None;
            let pause = backoff(q.attempts, s.retry_max);
            if !matches!(e, LinkError::Connect(..)) || q.attempts == 0 {
                tracing::warn!(target = %target.name, message = q.seq, error = %e, retry_in = ?pause, "no answer from the target; the queue waits");
            }
            record(
                s,
                q.seq,
                None,
                Outcome::Retry {
                    at: now_micros() + pause.as_micros() as i64,
                    error: e.to_string(),
                },
            )
            .await?;
            return Ok(false);
        }
    };
    record(s, q.seq, Some((kind, text)), outcome).await?;
    Ok(true)
}

async fn record(
    s: &Senders,
    seq: i64,
    rendered: Option<(String, String)>,
    outcome: Outcome,
) -> Result<(), StoreError> {
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || {
        store.write_rows(|c| queue::record(c, &[(seq, rendered, outcome)]))
    })
    .await
    .map_err(|e| StoreError::Database(format!("record task: {e}")))?
}

/// The wait before try `attempts + 1`: 250 ms, doubled each time, at most `max`.
fn backoff(attempts: i32, max: Duration) -> Duration {
    let base = Duration::from_millis(250);
    base.saturating_mul(1u32 << attempts.clamp(0, 16) as u32)
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_to_its_ceiling() {
        let max = Duration::from_secs(5);
        assert_eq!(backoff(0, max), Duration::from_millis(250));
        assert_eq!(backoff(2, max), Duration::from_secs(1));
        assert_eq!(backoff(40, max), max);
    }
}
