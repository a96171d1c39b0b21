//! Stable identity for what HL7v2 messages describe: the same patient, visit, practitioner or
//! location arriving again lands on the same resource. Each gets an id derived from its
//! business identifier (a hash of type, system and value), so a resend or an update is a PUT
//! to the same id: no search, and no race between two connections creating it twice.
//!
//! Identifier systems come from `capability/hl7v2/identifier-systems.json` (data, not code).

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Systems {
    authorities: HashMap<String, String>,
    facilities: HashMap<String, String>,
    fallback_base: String,
}

impl Systems {
    /// The table shipped in `capability/hl7v2/`.
    pub fn get() -> &'static Systems {
        static S: OnceLock<Systems> = OnceLock::new();
        S.get_or_init(|| {
            serde_json::from_str(include_str!(
                "../../../capability/hl7v2/identifier-systems.json"
            ))
            .expect("capability/hl7v2/identifier-systems.json is valid")
        })
    }

    /// The system of an identifier assigned by `namespace^universal^kind` (CX-4), or by the
    /// sending facility when there is no assigning authority.
    pub fn for_authority(
        &self,
        namespace: &str,
        universal: &str,
        kind: &str,
        facility: &str,
    ) -> String {
        let (namespace, universal) = (namespace.trim(), universal.trim());
        if let Some(s) = self.authorities.get(namespace) {
            return s.clone();
        }
        match kind.trim() {
            "ISO" if !universal.is_empty() => return format!("urn:oid:{universal}"),
            "URI" if !universal.is_empty() => return universal.to_string(),
            _ => {}
        }
        let part = super::datatypes::uri_part;
        match (namespace, universal) {
            ("", "") => match self.facilities.get(facility) {
                Some(s) => s.clone(),
                None => format!("{}facility/{}/id", self.fallback_base, part(facility)),
            },
            ("", u) => format!("{}authority/{}", self.fallback_base, part(u)),
            (n, _) => format!("{}authority/{}", self.fallback_base, part(n)),
        }
    }
}

/// The id of the `rtype` whose business key is `key` (an identifier's system and value, say):
/// 32 hex digits of SHA-256, the same every time.
pub fn stable_id(rtype: &str, key: &[&str]) -> String {
    let mut text = rtype.to_string();
    for k in key {
        text.push('|');
        text.push_str(k);
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systems_by_oid_table_or_fallback() {
        let s = Systems::get();
        assert_eq!(s.for_authority("GH", "1.2.3", "ISO", "F"), "urn:oid:1.2.3");
        assert_eq!(
            s.for_authority("SSA", "", "", "F"),
            "http://hl7.org/fhir/sid/us-ssn"
        );
        assert_eq!(
            s.for_authority("GOOD HEALTH", "", "", "F"),
            "http://emrsync.org/hl7v2/authority/GOOD_HEALTH"
        );
        assert_eq!(
            s.for_authority("", "", "", "LAB1"),
            "http://emrsync.org/hl7v2/facility/LAB1/id"
        );
    }

    #[test]
    fn stable_ids_are_stable_and_distinct() {
        let a = stable_id("Patient", &["urn:oid:1.2", "42"]);
        assert_eq!(a, stable_id("Patient", &["urn:oid:1.2", "42"]));
        assert_ne!(a, stable_id("Patient", &["urn:oid:1.2", "43"]));
        assert_ne!(a, stable_id("Encounter", &["urn:oid:1.2", "42"]));
        assert_eq!(a.len(), 32);
    }
}
