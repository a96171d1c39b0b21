//! Small domain types of a stored resource: its id, its version, and the server's instants.

use serde_json::{Map, Value, json};
use std::fmt;

/// A resource's logical id, checked against the spec's `[A-Za-z0-9\-\.]{1,64}` when built.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FhirId(String);

impl FhirId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if ok {
            Ok(FhirId(s.to_string()))
        } else {
            Err(format!(
                "'{s}' is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)"
            ))
        }
    }

    /// A fresh server-assigned id: a UUIDv7, which starts with its creation time, so that new
    /// ids land at the end of the store's indexes instead of all over them (a commit then
    /// writes a few pages, not one per new resource).
    pub fn generate() -> Self {
        FhirId(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FhirId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Server time as microseconds since the Unix epoch: how the store keeps `lastUpdated`.
pub type Micros = i64;

pub fn now_micros() -> Micros {
    chrono::Utc::now().timestamp_micros()
}

/// Seconds from `micros` (a stored time) to now, never negative: a latency for the metrics.
pub fn seconds_since(micros: Micros) -> f64 {
    (now_micros() - micros).max(0) as f64 / 1e6
}

/// Format as a FHIR `instant` (UTC, microseconds).
pub fn instant(micros: Micros) -> String {
    let t = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// serde's `serialize_with` for a stored time (microseconds) shown as an `instant`.
pub fn serialize_instant<S: serde::Serializer>(micros: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&instant(*micros))
}

/// The same for a time that may be absent.
pub fn serialize_instant_opt<S: serde::Serializer>(
    micros: &Option<i64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match micros {
        Some(m) => serialize_instant(m, s),
        None => s.serialize_none(),
    }
}

/// HTTP-date for `Last-Modified`.
pub fn http_date(micros: Micros) -> String {
    let t = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Parse a FHIR instant or dateTime (`_since`): partial dates mean their first moment, and a
/// time without zone is taken as UTC.
pub fn parse_instant(s: &str) -> Option<Micros> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    let padded = match s.len() {
        4 => format!("{s}-01-01T00:00:00"),
        7 => format!("{s}-01T00:00:00"),
        10 => format!("{s}T00:00:00"),
        _ => s.to_string(),
    };
    chrono::NaiveDateTime::parse_from_str(&padded, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

/// Set `id` and the server-owned parts of `meta` (versionId, lastUpdated), keeping the client's
/// profile, tag and security, with keys in the spec's order: resourceType, id, meta, the rest.
pub fn stamp(resource: Value, id: &FhirId, version: i64, last_updated: Micros) -> Value {
    let Value::Object(mut src) = resource else {
        return resource;
    };
    let mut meta = match src.shift_remove("meta") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    meta.remove("versionId");
    meta.remove("lastUpdated");
    let mut new_meta = Map::new();
    new_meta.insert("versionId".into(), json!(version.to_string()));
    new_meta.insert("lastUpdated".into(), json!(instant(last_updated)));
    new_meta.extend(meta);
    let mut out = Map::new();
    out.insert(
        "resourceType".into(),
        src.shift_remove("resourceType").unwrap_or(Value::Null),
    );
    out.insert("id".into(), json!(id.as_str()));
    out.insert("meta".into(), Value::Object(new_meta));
    src.shift_remove("id");
    out.extend(src);
    Value::Object(out)
}

/// The tag of a golden record: the master patient index's enterprise Patient of one person
/// (`identity::golden`), which links to that person's source records.
pub const GOLDEN_TAG: (&str, &str) = ("http://emrsync.org/fhir/CodeSystem/mpi", "golden-record");

/// Whether `resource` is a golden record (by its tag).
pub fn is_golden_record(resource: &Value) -> bool {
    resource["meta"]["tag"].as_array().is_some_and(|tags| {
        tags.iter()
            .any(|t| t["system"] == GOLDEN_TAG.0 && t["code"] == GOLDEN_TAG.1)
    })
}

/// The Patient a resource is about (`Patient/id`): itself, or its subject or patient (an
/// Appointment's: the patient taking part).
pub fn patient_of(rtype: &str, id: &str, resource: &Value) -> Option<String> {
    if rtype == "Patient" {
        return Some(format!("Patient/{id}"));
    }
    let participants = resource["participant"].as_array().into_iter().flatten();
    ["subject", "patient"]
        .iter()
        .map(|k| &resource[*k])
        .chain(participants.map(|p| &p["actor"]))
        .filter_map(|r| r["reference"].as_str())
        .find(|r| r.starts_with("Patient/"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_spec() {
        assert!(FhirId::parse("abc-1.2").is_ok());
        assert!(FhirId::parse("").is_err());
        assert!(FhirId::parse("a/b").is_err());
        assert!(FhirId::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn stamp_puts_meta_in_order_and_keeps_tags() {
        let r = json!({"name":[{"family":"X"}],"resourceType":"Patient","meta":{"versionId":"9","tag":[{"code":"t"}]}});
        let s = stamp(r, &FhirId::parse("p1").unwrap(), 2, 0);
        let keys: Vec<&String> = s.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["resourceType", "id", "meta", "name"]);
        assert_eq!(s["meta"]["versionId"], "2");
        assert_eq!(s["meta"]["tag"][0]["code"], "t");
        assert_eq!(s["meta"]["lastUpdated"], "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn since_accepts_partial_dates() {
        assert_eq!(parse_instant("1970-01-02"), Some(86_400_000_000));
        assert_eq!(parse_instant("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_instant("yesterday"), None);
    }
}
