//! `/metrics`: what the server does, in the Prometheus text format. Counters and histograms
//! are recorded where things happen, through the `metrics` facade (HTTP requests in `http`,
//! HL7v2 messages where their ACK is made, deliveries where their answer is read, the cache,
//! group commits); what is a state rather than an event (queue depths and ages, the pool, the
//! process's memory) is read from the database and the process when the page is asked for, so
//! it is right whichever process of a shared database did the work.
//!
//! One recorder per process (the facade's is global): several servers in one process (the
//! tests) share it, as several stores would share one Prometheus job.

use crate::store::Store;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

pub mod http;
pub mod queues;

/// Latency buckets (seconds): from a cached read to a target that waits for its timeout.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Writers per group commit.
const WRITERS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The process's recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("emrsync_group_commit_writers".into()),
                    WRITERS,
                )
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // another recorder already installed (an embedding program's): ours still renders
        // what it is given, the facade's calls go to theirs
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "a metrics recorder was installed before emrsync's; /metrics will be sparse"
            );
        }
        describe();
        handle
    })
}

/// Keep the histograms' memory bounded between scrapes (the exporter drains raw samples into
/// buckets here); run for the life of the server.
pub async fn upkeep() {
    let h = handle();
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        h.run_upkeep();
    }
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "emrsync_http_requests_total",
        "FHIR API requests by interaction, resource type and status"
    );
    describe_histogram!(
        "emrsync_http_request_duration_seconds",
        Unit::Seconds,
        "FHIR API request latency by interaction and resource type"
    );
    describe_counter!(
        "emrsync_hl7v2_messages_total",
        "HL7v2 messages received by type, trigger and ACK code"
    );
    describe_histogram!(
        "emrsync_hl7v2_message_duration_seconds",
        Unit::Seconds,
        "From an HL7v2 message's receipt to its ACK, by type"
    );
    describe_histogram!(
        "emrsync_delivery_latency_seconds",
        Unit::Seconds,
        "From a change's commit to its subscriber's or target's acknowledgement"
    );
    describe_counter!(
        "emrsync_deliveries_total",
        "Notifications and outbound messages by kind, name and outcome"
    );
    describe_counter!(
        "emrsync_cache_requests_total",
        "Resource cache lookups by result (hit, miss)"
    );
    describe_histogram!(
        "emrsync_group_commit_writers",
        "Writers committed together by one SQLite group commit"
    );
    describe_gauge!(
        "emrsync_outbox_depth",
        "Committed changes not yet dispatched to subscriptions"
    );
    describe_gauge!(
        "emrsync_outbox_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest change not yet dispatched"
    );
    describe_counter!(
        "emrsync_stream_published_total",
        "Changes the event stream's broker acknowledged as new"
    );
    describe_counter!(
        "emrsync_stream_resent_total",
        "Changes published again that the broker had already (dropped as duplicates)"
    );
    describe_counter!(
        "emrsync_stream_skipped_total",
        "Changes too big for the event stream's broker, skipped"
    );
    describe_histogram!(
        "emrsync_stream_lag_seconds",
        Unit::Seconds,
        "From a change's commit to the event stream's broker acknowledging it"
    );
    describe_histogram!(
        "emrsync_stream_step_seconds",
        Unit::Seconds,
        "The event stream publisher's steps per batch: read, publish (to the acknowledgements), mark"
    );
    describe_counter!(
        "emrsync_vendor_records_total",
        "Vendor source records by source, record type and outcome (accepted, refused to the exception queue)"
    );
    describe_counter!(
        "emrsync_vendor_poll_failures_total",
        "Vendor source readings that stopped (the vendor unreachable or refusing), by source"
    );
    describe_gauge!(
        "emrsync_process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory of this process"
    );
}

/// The page: scrape-time states set, then everything rendered.
pub fn render(store: &Store) -> String {
    let h = handle();
    if let Err(e) = queues::observe(store) {
        tracing::warn!(error = %e, "queue states for /metrics cannot be read");
        metrics::counter!("emrsync_metrics_store_errors_total").increment(1);
    }
    let (connections, idle) = store.pool_state();
    metrics::gauge!("emrsync_db_pool_connections").set(connections as f64);
    metrics::gauge!("emrsync_db_pool_idle_connections").set(idle as f64);
    metrics::gauge!("emrsync_cache_entries").set(store.cached_entries() as f64);
    if let Some(rss) = resident_bytes() {
        metrics::gauge!("emrsync_process_resident_memory_bytes").set(rss as f64);
    }
    h.render()
}

/// The process's resident set (Linux: `/proc/self/statm`, in pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
