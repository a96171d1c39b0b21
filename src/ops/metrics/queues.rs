//! The queue gauges of `/metrics`, set from a reading of the queues (`ops::queues`) when the
//! page is asked for.

use crate::ops::queues;
use crate::store::{Store, StoreError};

/// Set the queue gauges from the database.
pub fn observe(store: &Store) -> Result<(), StoreError> {
    let q = store.read(|c| queues::read(c, store.publishing()))?;
    let stages = [
        ("dispatch", Some(q.dispatch)),
        ("route", Some(q.route)),
        ("stream", q.stream),
    ];
    for (stage, d) in stages.into_iter().filter_map(|(s, d)| Some((s, d?))) {
        metrics::gauge!("emrsync_outbox_depth", "stage" => stage).set(d.waiting as f64);
        metrics::gauge!("emrsync_outbox_oldest_age_seconds", "stage" => stage).set(d.oldest_age);
    }
    for s in q.subscriptions {
        let labels = [("subscription", s.id), ("channel", s.channel)];
        metrics::gauge!("emrsync_subscription_queue_depth", &labels).set(s.depth as f64);
        metrics::gauge!("emrsync_subscription_failing", &labels)
            .set(f64::from(u8::from(s.failing)));
    }
    for t in q.targets {
        let label = [("target", t.name)];
        metrics::gauge!("emrsync_target_queue_depth", &label).set(t.pending.waiting as f64);
        metrics::gauge!("emrsync_target_queue_oldest_age_seconds", &label)
            .set(t.pending.oldest_age);
        metrics::gauge!("emrsync_target_failed_messages", &label).set(t.failed as f64);
    }
    for (st, n) in [("failed", q.hl7v2_failed), ("held", q.hl7v2_held)] {
        metrics::gauge!("emrsync_hl7v2_queue_messages", "status" => st).set(n as f64);
    }
    for (source, d) in q.vendors {
        let label = [("source", source)];
        metrics::gauge!("emrsync_vendor_exceptions", &label).set(d.waiting as f64);
        metrics::gauge!("emrsync_vendor_exceptions_oldest_age_seconds", &label).set(d.oldest_age);
    }
    Ok(())
}
