//! What a consumer of the stream reads: one JSON envelope per committed change, in the shape of
//! a CloudEvent (`specversion`, `id`, `source`, `type`, `time`, `subject`), on a subject per
//! resource type and patient partition, so that a consumer of one patient's partition sees that
//! patient's changes in commit order.

use serde::Serialize;
use serde_json::value::RawValue;

/// What the envelope carries of the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Payload {
    /// Its reference only (`Observation/1/_history/2`): the consumer reads it with its own
    /// token. The default: no PHI in the stream unless asked for.
    Reference,
    /// The resource itself, as stored.
    Resource,
}

/// One change, as the outbox and the store give it.
pub struct Change<'a> {
    /// The outbox position: the event's id, and its `Nats-Msg-Id` (resent after a crash, it
    /// is dropped by the broker as a duplicate).
    pub seq: i64,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub version_id: i64,
    /// `create`, `update` or `delete`.
    pub action: &'a str,
    pub correlation_id: &'a str,
    /// The source system whose write it was (empty for the REST API).
    pub origin: &'a str,
    /// Microseconds since the epoch.
    pub committed_at: i64,
    /// `Patient/<id>` the resource is about, when it is about one.
    pub patient: Option<&'a str>,
    /// `Patient/<id>` of that patient's enterprise record (the MPI's golden record), when the
    /// MPI keeps one.
    pub enterprise_patient: Option<&'a str>,
    /// The resource as stored (one line of JSON), when the payload carries it.
    pub resource: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    specversion: &'static str,
    id: String,
    source: &'a str,
    #[serde(rename = "type")]
    kind: String,
    time: String,
    subject: String,
    datacontenttype: &'static str,
    resource_type: &'a str,
    resource_id: &'a str,
    version_id: i64,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    patient: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enterprise_patient: Option<&'a str>,
    correlation_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    source_system: &'a str,
    /// The resource (payload `resource`, not for a deletion).
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
}

/// The envelope of `change` as bytes; `source` is the server's base URL.
pub fn encode(change: &Change, source: &str) -> Result<Vec<u8>, serde_json::Error> {
    let time = chrono::DateTime::from_timestamp_micros(change.committed_at)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let data = match change.resource {
        Some(r) if change.action != "delete" => Some(serde_json::from_str::<&RawValue>(r)?),
        _ => None,
    };
    serde_json::to_vec(&Envelope {
        specversion: "1.0",
        id: change.seq.to_string(),
        source,
        kind: format!("org.emrsync.resource.{}", change.action),
        time,
        subject: format!(
            "{}/{}/_history/{}",
            change.resource_type, change.resource_id, change.version_id
        ),
        datacontenttype: "application/fhir+json",
        resource_type: change.resource_type,
        resource_id: change.resource_id,
        version_id: change.version_id,
        action: change.action,
        patient: change.patient,
        enterprise_patient: change.enterprise_patient,
        correlation_id: change.correlation_id,
        source_system: change.origin,
        data,
    })
}

/// `<prefix>.<type>.<partition>`: the patient's partition (one of `partitions`, the same for
/// every resource about that patient), or `none` for a resource about no patient.
pub fn subject(prefix: &str, change: &Change, partitions: u32) -> String {
    match change.patient {
        Some(p) => format!(
            "{prefix}.{}.{}",
            change.resource_type,
            partition(p, partitions)
        ),
        None => format!("{prefix}.{}.none", change.resource_type),
    }
}

/// A patient's partition: FNV-1a of `Patient/<id>`, stable across processes and versions
/// (never Rust's `DefaultHasher`, whose output may change between releases).
pub fn partition(patient: &str, partitions: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in patient.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change<'a>(patient: Option<&'a str>, resource: Option<&'a str>) -> Change<'a> {
        Change {
            seq: 42,
            resource_type: "Observation",
            resource_id: "o1",
            version_id: 2,
            action: "update",
            correlation_id: "c-1",
            origin: "LAB",
            committed_at: 1_796_083_200_000_000,
            patient,
            enterprise_patient: None,
            resource,
        }
    }

    #[test]
    fn an_envelope_says_what_changed_and_carries_the_resource_only_when_asked() {
        let body = r#"{"resourceType":"Observation","id":"o1","status":"final"}"#;
        let with = encode(&change(Some("Patient/p1"), Some(body)), "http://h/fhir").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&with).unwrap();
        assert_eq!(v["id"], "42");
        assert_eq!(v["type"], "org.emrsync.resource.update");
        assert_eq!(v["time"], "2026-12-01T00:00:00.000000Z");
        assert_eq!(v["subject"], "Observation/o1/_history/2");
        assert_eq!(v["patient"], "Patient/p1");
        assert_eq!(v["sourceSystem"], "LAB");
        assert_eq!(v["data"]["status"], "final");
        let without = encode(&change(None, None), "http://h/fhir").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&without).unwrap();
        assert!(v.get("data").is_none() && v.get("patient").is_none(), "{v}");
    }

    #[test]
    fn a_patients_changes_share_a_partition() {
        let a = subject("emrsync", &change(Some("Patient/p1"), None), 16);
        assert_eq!(
            a,
            format!("emrsync.Observation.{}", partition("Patient/p1", 16))
        );
        assert_eq!(
            subject("emrsync", &change(None, None), 16),
            "emrsync.Observation.none"
        );
        // spread over the partitions, all of them in range
        let used: std::collections::BTreeSet<u32> = (0..1000)
            .map(|i| partition(&format!("Patient/{i}"), 16))
            .collect();
        assert_eq!(used.len(), 16);
        // FNV-1a, fixed: a consumer in another language computes the same
        assert_eq!(partition("Patient/p1", u32::MAX), 3_956_762_408);
        assert_eq!(partition("Patient/p1", 16), 8);
    }
}
