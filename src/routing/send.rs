//! One target's sender: its queue sent in order over one MLLP connection, the next message
//! only after the last one's ACK. A refusal (AE, AR) sends the message to the exception queue
//! and the queue goes on; no answer (the target down, a timeout) holds the queue and the same
//! message is tried again after a back-off that doubles up to a ceiling, so a target that was
//! down receives what it missed, in order, when it returns.

use super::config::{Channel, Target};
use super::fhir_client::FhirLink;
use super::queue::{self, Outcome, Queued, Tried};
use super::render::{Prefetched, Rendered, render};
use super::value_maps::ValueMaps;
use crate::adapters::hl7v2::out::client::{Link, Tls};
use crate::fhir::resource::now_micros;
use crate::store::lease;
use crate::store::{Store, StoreError};
use crate::subscriptions::dispatch::SamePerson;
use crate::terminology::Terminology;
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
    /// Where the targets' value maps are read (ConceptMaps, through its cache).
    pub terminology: Arc<Terminology>,
    /// This server's base URL, as notifications refer to what they are about.
    pub base: String,
}

/// Send `target`'s queue for ever; `wake` is notified when messages are queued.
///
/// The queue is read a window at a time and the window rendered in one go; outcomes are
/// recorded together at the window's end (or before the queue is held). A crash between a
/// target's ACK and that record sends those messages again after the restart, with the same
/// control ids: at least once, as every MLLP link is.
pub async fn run(s: Senders, target: Target, wake: Arc<Notify>) {
    let mut link = Connection::of(&target.channel);
    let shared = loop {
        match lease::shared(&s.store).await {
            Ok(shared) => break shared,
            Err(e) => {
                tracing::warn!(target = %target.name, error = %e, "the database cannot be read; will retry");
                tokio::time::sleep(TICK).await;
            }
        }
    };
    loop {
        let held = match shared {
            true => lease::hold(&s.store, &target.name, &s.owner).await,
            false => Ok(true),
        };
        match held {
            Ok(true) => {}
            Ok(false) => {
                // another process sends for this target
                link.close();
                tokio::time::sleep(lease::RETRY).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(target = %target.name, error = %e, "the target's lease cannot be taken; will retry");
                tokio::time::sleep(TICK).await;
                continue;
            }
        }
        let started = std::time::Instant::now();
        let window = match rendered_window(&s, &target).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(target = %target.name, error = %e, "the target's queue cannot be read; will retry");
                tokio::time::sleep(TICK).await;
                continue;
            }
        };
        match window {
            Window::Empty => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(TICK) => {}
                }
                continue;
            }
            // the head waits for its retry, and so does everything behind it
            Window::Wait(d) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(d.min(TICK * 2)) => {}
                }
                continue;
            }
            Window::Ready(messages) => {
                let rendered = started.elapsed();
                let mut done: Vec<Tried> = Vec::with_capacity(messages.len());
                for (q, rendering) in messages {
                    let (kind, parts) = match rendering {
                        Ok(Rendered::Message { kind, text }) => {
                            (kind, vec![(q.control_id(), text)])
                        }
                        Ok(Rendered::Parts { kind, parts }) => (kind, parts),
                        Ok(Rendered::Nothing(why)) => {
                            done.push((q.seq, None, Outcome::Skipped { why }));
                            continue;
                        }
                        Err(why) => {
                            tracing::warn!(target = %target.name, message = q.seq, error = %why, "outbound message cannot be made: to the exception queue");
                            done.push((
                                q.seq,
                                None,
                                Outcome::Failed {
                                    ack: None,
                                    error: why,
                                },
                            ));
                            continue;
                        }
                    };
                    // the parts in order; the message is sent when every part is taken (a part
                    // refused or unanswered is the message's outcome: replay sends them all)
                    let mut outcome = Outcome::Sent { ack: String::new() };
                    for (control_id, text) in &parts {
                        outcome = link.exchange(&q, (control_id, text), s.retry_max).await;
                        if !matches!(outcome, Outcome::Sent { .. }) {
                            break;
                        }
                    }
                    let text = parts
                        .into_iter()
                        .map(|(_, t)| t)
                        .collect::<Vec<_>>()
                        .join("\n");
                    observe(&s.store, &target.name, &q, &outcome);
                    let held = matches!(outcome, Outcome::Retry { .. });
                    if let Outcome::Retry { error, .. } = &outcome
                        && q.attempts == 0
                    {
                        tracing::warn!(target = %target.name, message = q.seq, error = %error, "no answer from the target; the queue waits");
                    }
                    if let Outcome::Failed { ack, error } = &outcome {
                        tracing::warn!(target = %target.name, message = q.seq, ack = ?ack, error = %error, "target refused a message: to the exception queue");
                    }
                    done.push((q.seq, (!held).then_some((kind, text)), outcome));
                    if held {
                        break;
                    }
                }
                let exchanged = started.elapsed();
                while let Err(e) = record(&s, done.clone()).await {
                    tracing::warn!(target = %target.name, error = %e, "recording outbound outcomes failed; will retry");
                    tokio::time::sleep(TICK).await;
                }
                tracing::debug!(target = %target.name, messages = done.len(), ?rendered, ?exchanged, recorded = ?started.elapsed(), "window sent");
            }
        }
    }
}

/// The next messages of a queue, rendered.
enum Window {
    Empty,
    /// The head is not due for this long.
    Wait(Duration),
    Ready(Vec<(Queued, Result<Rendered, String>)>),
}

/// Read the queue's next window and render the messages that are due, on one connection.
async fn rendered_window(s: &Senders, target: &Target) -> Result<Window, StoreError> {
    let (store, persons, t) = (s.store.clone(), s.persons.clone(), target.clone());
    let terminology = s.terminology.clone();
    let base = s.base.clone();
    tokio::task::spawn_blocking(move || {
        let maps = ValueMaps::of(&terminology, &t.value_maps);
        store.read(|c| {
            let window = queue::next(c, &t.name, WINDOW)?;
            let now = now_micros();
            match window.first() {
                None => return Ok(Window::Empty),
                Some(head) if head.next_attempt_at > now => {
                    return Ok(Window::Wait(Duration::from_micros(
                        (head.next_attempt_at - now) as u64,
                    )));
                }
                Some(_) => {}
            }
            let due: Vec<Queued> = window
                .into_iter()
                .take_while(|q| q.next_attempt_at <= now)
                .collect();
            let read = Prefetched::load(c, &due)?;
            let mut ready = Vec::with_capacity(due.len());
            for q in due {
                let r = render(c, (&q, &read), &t, (persons.as_deref(), &maps, &base))?;
                ready.push((q, r));
            }
            Ok(Window::Ready(ready))
        })
    })
    .await
    .map_err(|e| StoreError::Database(format!("render task: {e}")))?
}

/// Send one message over the link (opened if need be) and read what became of it.
/// A target's open link, by its channel.
enum Connection {
    Mllp {
        address: String,
        timeout: Duration,
        /// TLS to the target, or why it cannot be set up (each try then fails with that).
        tls: Option<Result<Tls, String>>,
        link: Option<Link>,
    },
    Fhir(FhirLink),
}

impl Connection {
    fn of(channel: &Channel) -> Connection {
        match channel.clone() {
            Channel::Mllp {
                address,
                ack_timeout_ms,
                tls,
            } => Connection::Mllp {
                tls: tls.map(|t| {
                    let host = address
                        .rsplit_once(':')
                        .map_or(address.as_str(), |(h, _)| h);
                    let name = t.server_name.as_deref().unwrap_or(host);
                    let identity = t.cert_file.as_deref().zip(t.key_file.as_deref());
                    Tls::new(&t.ca_file, name, identity)
                }),
                address,
                timeout: Duration::from_millis(ack_timeout_ms.max(1)),
                link: None,
            },
            Channel::Fhir {
                base,
                oauth2,
                timeout_ms,
            } => Connection::Fhir(FhirLink::new(
                base.trim_end_matches('/'),
                oauth2,
                Duration::from_millis(timeout_ms.max(1)),
            )),
            Channel::RestHook {
                endpoint,
                headers,
                oauth2,
                timeout_ms,
            } => Connection::Fhir(
                FhirLink::new(&endpoint, oauth2, Duration::from_millis(timeout_ms.max(1)))
                    .with_headers(headers.iter().map(|h| h.resolve()).collect()),
            ),
        }
    }

    fn close(&mut self) {
        if let Connection::Mllp { link, .. } = self {
            *link = None;
        }
    }

    /// Send one message and read what became of it; a try that got no answer is tried again
    /// after the back-off (`retry_max` at most).
    async fn exchange(
        &mut self,
        q: &Queued,
        (control_id, text): (&str, &str),
        retry_max: Duration,
    ) -> Outcome {
        let pause = backoff(q.attempts, retry_max);
        let (address, timeout, tls, link) = match self {
            Connection::Fhir(f) => return f.send(text, pause).await,
            Connection::Mllp {
                address,
                timeout,
                tls,
                link,
            } => (address.as_str(), *timeout, tls, link),
        };
        let tls = match tls {
            None => None,
            Some(Ok(t)) => Some(&*t),
            Some(Err(why)) => {
                return Outcome::Retry {
                    at: now_micros() + pause.as_micros() as i64,
                    error: format!("TLS cannot be set up: {why}"),
                };
            }
        };
        let answer = match link.as_mut() {
            Some(l) => l.exchange(text, control_id, timeout).await,
            None => match Link::connect(address, timeout, tls).await {
                Ok(l) => link.insert(l).exchange(text, control_id, timeout).await,
                Err(e) => Err(e),
            },
        };
        match answer {
            Ok(ack) if ack.accepted() => Outcome::Sent { ack: ack.code },
            Ok(ack) => Outcome::Failed {
                error: ack
                    .error
                    .unwrap_or_else(|| format!("the target answered {}", ack.code)),
                ack: Some(ack.code),
            },
            Err(e) => {
                *link = None;
                Outcome::Retry {
                    at: now_micros() + pause.as_micros() as i64,
                    error: e.to_string(),
                }
            }
        }
    }
}

/// A try counted, and a message taken timed from its queueing (right after its commit).
fn observe(store: &Store, target: &str, q: &Queued, outcome: &Outcome) {
    let result = match outcome {
        Outcome::Sent { .. } => "sent",
        Outcome::Failed { .. } => "failed",
        Outcome::Retry { .. } => "retry",
        Outcome::Skipped { .. } => "skipped",
    };
    metrics::counter!("emrsync_deliveries_total",
        "kind" => "target", "name" => target.to_string(), "outcome" => result)
    .increment(1);
    if !matches!(outcome, Outcome::Retry { .. }) {
        audit_delivery(store, target, q, outcome);
    }
    if let Outcome::Sent { .. } = outcome {
        metrics::histogram!("emrsync_delivery_latency_seconds",
            "kind" => "target", "name" => target.to_string())
        .record(crate::fhir::resource::seconds_since(q.created_at));
    }
}

/// A message taken or refused by a target, in the audit trail ("where did this result go"):
/// the target, the change's resource and patient, under the change's correlation id. A try
/// that got no answer is not a delivery: the one that does is recorded.
fn audit_delivery(store: &Store, target: &str, q: &Queued, outcome: &Outcome) {
    use crate::store::audit::{Entry, kind};
    let mut e = Entry::now(
        kind::DELIVERY,
        "route",
        &format!("target {target}"),
        &q.correlation_id,
    );
    if let Some((t, id)) = q.focus.split_once('/') {
        e.resource_type = Some(t.to_string());
        e.resource_id = Some(id.to_string());
    }
    e.patient = q.patient.clone();
    let (result, detail) = match outcome {
        Outcome::Sent { ack } => (
            "success",
            format!("message {} taken: {ack}", q.control_id()),
        ),
        Outcome::Failed { ack, error } => (
            "failure",
            format!(
                "message {} refused ({}): {error}",
                q.control_id(),
                ack.as_deref().unwrap_or("-")
            ),
        ),
        Outcome::Skipped { why } => ("success", format!("nothing sent: {why}")),
        Outcome::Retry { error, .. } => ("failure", error.clone()),
    };
    e.outcome = result.into();
    e.detail = Some(detail);
    store.audit(e);
}

async fn record(s: &Senders, done: Vec<Tried>) -> Result<(), StoreError> {
    if done.is_empty() {
        return Ok(());
    }
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || store.write_rows(|c| queue::record(c, &done)))
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
