//! The event stream: every committed change published to NATS JetStream, in outbox order, for
//! analytics, a data lake or another region to consume at their own pace and replay from any
//! point (`serve --stream nats://host:4222`; off by default).
//!
//! No loss: a change is marked published only once the broker acknowledged it, and a broker
//! that is down makes the outbox wait (the publisher tries again, backing off). No
//! duplicate: each message carries its outbox position as `Nats-Msg-Id`, so the resend of a
//! change published but not yet marked (a crash in between) is dropped by the broker within
//! the stream's duplicate window. The contract consumers rely on is `docs/event-stream.md`.

pub mod config;
pub mod envelope;
pub mod outbox;

use crate::fhir::resource::now_micros;
use crate::store::{Store, lease};
use async_nats::jetstream;
use envelope::{Change, Payload};
use std::collections::HashMap;
use std::time::Duration;

/// Changes read and published per turn (their acknowledgements awaited together).
const BATCH: i64 = 500;

/// How the stream is reached and shaped.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// `nats://[user:password@]host:4222` (`tls://` requires TLS).
    pub url: String,
    /// The credentials and TLS the broker is reached with.
    pub connection: config::BrokerArgs,
    /// The JetStream stream, created at start-up when it does not exist.
    pub name: String,
    /// Subjects are `<prefix>.<resource type>.<partition>`.
    pub prefix: String,
    pub partitions: u32,
    pub payload: Payload,
    pub max_age: Duration,
    pub replicas: usize,
    /// How long the broker remembers message ids to drop resends.
    pub duplicate_window: Duration,
    /// The server's base URL: the events' `source`.
    pub source: String,
    /// Whether the master patient index runs: events then name their enterprise patient.
    pub mpi: bool,
    /// This process, as holder of the publisher's lease (several processes on one PostgreSQL:
    /// one publishes at a time, so the stream keeps the outbox's order).
    pub owner: String,
}

/// Publish for ever. A broker that cannot be reached or refuses is tried again, backing off
/// from half a second to 30 s, with nothing marked that it did not acknowledge; the task
/// itself keeps running, so that `/ready` does not take a node out of service because the
/// analytics broker is away.
pub async fn run(store: Store, settings: StreamSettings) {
    let mut pause = FIRST_PAUSE;
    loop {
        let started = std::time::Instant::now();
        if let Err(e) = publish(&store, &settings).await {
            tracing::warn!(error = %e, url = %crate::store::db::redacted(&settings.url), retry_in = ?pause, "the event stream stopped; the outbox keeps the changes until it is back");
        }
        // a connection that lasted is a new outage, not the same one
        if started.elapsed() > LONGEST_PAUSE {
            pause = FIRST_PAUSE;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

const FIRST_PAUSE: Duration = Duration::from_millis(500);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

async fn publish(store: &Store, settings: &StreamSettings) -> Result<(), String> {
    let client = settings.connection.connect(&settings.url).await?;
    let js = jetstream::new(client);
    let subjects = format!("{}.>", settings.prefix);
    let mut stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: settings.name.clone(),
            subjects: vec![subjects.clone()],
            max_age: settings.max_age,
            num_replicas: settings.replicas,
            duplicate_window: settings.duplicate_window,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("the stream {}: {e}", settings.name))?;
    let found = stream
        .info()
        .await
        .map_err(|e| format!("the stream {}: {e}", settings.name))?
        .config
        .clone();
    check(&found, settings, &subjects)?;
    tracing::info!(stream = %settings.name, url = %crate::store::db::redacted(&settings.url), "publishing the event stream");
    let mut changes = store.changes();
    let mut lease = Lease::of(store).await?;
    loop {
        if !lease.held(store, settings).await? {
            // another process publishes; this one takes over if that one stops
            tokio::time::sleep(lease::RETRY).await;
            continue;
        }
        let (s, mpi) = (store.clone(), settings.mpi);
        let read_at = std::time::Instant::now();
        let Batch {
            changes: batch,
            patients,
            enterprise,
        } = tokio::task::spawn_blocking(move || s.read(|c| Batch::read(c, mpi)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if batch.is_empty() {
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        step("read", read_at);
        let publish_at = std::time::Instant::now();
        let mut acks = Vec::with_capacity(batch.len());
        let mut done = Vec::with_capacity(batch.len());
        for ((p, v), patient) in batch.iter().zip(&patients) {
            let content = v.as_ref().map(|v| &*v.content);
            let patient = patient.as_deref();
            let enterprise_patient = patient
                .and_then(|p| p.strip_prefix("Patient/"))
                .and_then(|id| enterprise.get(id))
                .map(|g| format!("Patient/{g}"));
            let change = Change {
                seq: p.seq,
                resource_type: &p.resource_type,
                resource_id: &p.resource_id,
                version_id: p.version_id,
                action: &p.action,
                correlation_id: &p.correlation_id,
                origin: &p.origin,
                committed_at: p.created_at,
                patient,
                enterprise_patient: enterprise_patient.as_deref(),
                resource: match settings.payload {
                    Payload::Resource => content,
                    Payload::Reference => None,
                },
            };
            let body = envelope::encode(&change, &settings.source).map_err(|e| e.to_string())?;
            let subject = envelope::subject(&settings.prefix, &change, settings.partitions);
            let message = jetstream::message::PublishMessage::build()
                .payload(body.into())
                .message_id(p.seq.to_string());
            match js.send_publish(subject, message).await {
                Ok(ack) => acks.push((p.seq, ack)),
                // too big for the broker: said and skipped, never blocking what follows
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
                    tracing::error!(seq = p.seq, resource = %format!("{}/{}", p.resource_type, p.resource_id), error = %e, "a change too big for the event stream is skipped");
                    metrics::counter!("emrsync_stream_skipped_total").increment(1);
                    done.push(p.seq);
                }
                Err(e) => return Err(format!("publishing: {e}")),
            }
        }
        let (mut new, mut resent) = (0u64, 0u64);
        let committed: HashMap<i64, i64> =
            batch.iter().map(|(p, _)| (p.seq, p.created_at)).collect();
        for (seq, ack) in acks {
            let ack = ack
                .await
                .map_err(|e| format!("acknowledgement of {seq}: {e}"))?;
            // published before and not marked (a crash, another process): the broker kept
            // the first and dropped this one
            match ack.duplicate {
                true => resent += 1,
                false => new += 1,
            }
            if let Some(at) = committed.get(&seq) {
                let lag = (now_micros() - at).max(0) as f64 / 1e6;
                metrics::histogram!("emrsync_stream_lag_seconds").record(lag);
            }
            done.push(seq);
        }
        step("publish", publish_at);
        let (s, mark_at) = (store.clone(), std::time::Instant::now());
        tokio::task::spawn_blocking(move || s.write_rows(|c| outbox::published(c, &done)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        step("mark", mark_at);
        metrics::counter!("emrsync_stream_published_total").increment(new);
        metrics::counter!("emrsync_stream_resent_total").increment(resent);
    }
}

/// A stream that existed before emrsync started is used as it is, but only if it takes
/// emrsync's subjects (else every publish would be refused: said once, with both lists); limits
/// that differ from the settings are the operator's choice, and said.
fn check(
    found: &jetstream::stream::Config,
    settings: &StreamSettings,
    subjects: &str,
) -> Result<(), String> {
    if !found.subjects.iter().any(|s| covers(s, &settings.prefix)) {
        return Err(format!(
            "the stream {} exists with subjects {:?}, none of which takes {subjects}: add it to the stream or choose another --stream-name or --stream-prefix",
            settings.name, found.subjects
        ));
    }
    if found.max_age != settings.max_age || found.num_replicas != settings.replicas {
        tracing::warn!(stream = %settings.name, max_age = ?found.max_age, replicas = found.num_replicas,
            "the stream exists with other limits than --stream-max-age-hours and --stream-replicas; it keeps its own");
    }
    Ok(())
}

/// Whether the subject filter `pattern` takes every subject emrsync publishes under `prefix`
/// (`prefix.<type>.<partition>`): `>`, `prefix.>`, `prefix.*.*`, or these with `*` for some of
/// the prefix's tokens.
fn covers(pattern: &str, prefix: &str) -> bool {
    let wanted: Vec<Option<&str>> = prefix.split('.').map(Some).chain([None, None]).collect();
    let tokens: Vec<&str> = pattern.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        match (*token, wanted.get(i)) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (t, Some(Some(w))) if t == *w => {}
            _ => return false,
        }
    }
    tokens.len() == wanted.len()
}

/// How long one step of a batch took (`read` the outbox, `publish` and await the broker's
/// acknowledgements, `mark` them published): where the stream's lag comes from.
fn step(name: &'static str, since: std::time::Instant) {
    metrics::histogram!("emrsync_stream_step_seconds", "step" => name)
        .record(since.elapsed().as_secs_f64());
}

/// The publisher's lease when processes share the database: taken before a batch, renewed
/// every few seconds while publishing (a write per renewal, not per batch).
struct Lease {
    shared: bool,
    renewed: Option<std::time::Instant>,
}

/// How often a held lease is renewed: well inside its term.
const RENEW_EVERY: Duration = Duration::from_secs(5);

impl Lease {
    async fn of(store: &Store) -> Result<Lease, String> {
        Ok(Lease {
            shared: lease::shared(store).await.map_err(|e| e.to_string())?,
            renewed: None,
        })
    }

    /// Whether this process may publish the next batch.
    async fn held(&mut self, store: &Store, settings: &StreamSettings) -> Result<bool, String> {
        if !self.shared {
            return Ok(true);
        }
        if self.renewed.is_some_and(|at| at.elapsed() < RENEW_EVERY) {
            return Ok(true);
        }
        let name = format!("stream:{}", settings.name);
        let held = lease::hold(store, &name, &settings.owner)
            .await
            .map_err(|e| format!("the publisher's lease: {e}"))?;
        if held && self.renewed.is_none() {
            tracing::info!(stream = %settings.name, "this process publishes the event stream");
        }
        self.renewed = held.then(std::time::Instant::now);
        Ok(held)
    }
}

/// A batch of unpublished changes, each with the patient it is about, and the enterprise
/// patient of each such patient that has one.
struct Batch {
    changes: Vec<(outbox::Pending, Option<crate::store::versions::Version>)>,
    patients: Vec<Option<String>>,
    enterprise: HashMap<String, String>,
}

impl Batch {
    fn read(
        c: &mut crate::store::DbConnection,
        mpi: bool,
    ) -> Result<Batch, crate::store::StoreError> {
        let changes = outbox::unpublished(c, BATCH)?;
        let patients: Vec<Option<String>> = changes
            .iter()
            .map(|(p, v)| {
                let content = v.as_ref().map(|v| &*v.content)?;
                crate::store::audit::patient_in(&p.resource_type, &p.resource_id, content)
            })
            .collect();
        let enterprise = match mpi {
            true => {
                let ids: Vec<&str> = patients
                    .iter()
                    .flatten()
                    .filter_map(|p| p.strip_prefix("Patient/"))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                crate::identity::reading::enterprise_patients(c, &ids)?
            }
            false => Default::default(),
        };
        Ok(Batch {
            changes,
            patients,
            enterprise,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn a_filter_covers_the_prefix_only_with_a_tail_wildcard_after_it() {
        assert!(covers(">", "emrsync"));
        assert!(covers("emrsync.>", "emrsync"));
        assert!(covers("*.>", "emrsync"));
        assert!(covers("hub.*.>", "hub.east"));
        assert!(covers("hub.>", "hub.east"));
        assert!(!covers("emrsync", "emrsync"));
        assert!(covers("emrsync.*.*", "emrsync"));
        assert!(!covers("emrsync.*", "emrsync"));
        assert!(!covers("emrsync.*.*.*", "emrsync"));
        assert!(!covers("emrsync.Patient.>", "emrsync"));
        assert!(!covers("elsewhere.>", "emrsync"));
        assert!(!covers("hub.west.>", "hub.east"));
    }
}
