//! Stable identity for what HL7v2 messages describe: the same patient, visit, practitioner or
//! location arriving again lands on the same resource. Each gets an id derived from its
//! business identifier (a hash of type, system and value), so a resend or an update is a PUT
//! to the same id: no search, and no race between two connections creating it twice.
//!
//! Identifier systems come from `capability/hl7v2/identifier-systems.json` (data, not code).

use crate::store::{Store, StoreError};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

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

impl Systems {
    /// The assigning authority (CX-4: namespace, universal id, its type) to write for an
    /// identifier of `system`: `for_authority` turned round. An identifier the sending
    /// facility scoped has none.
    pub fn authority_of(&self, system: &str) -> (String, String, String) {
        if let Some((namespace, _)) = self.authorities.iter().filter(|(_, s)| *s == system).min() {
            return (namespace.clone(), String::new(), String::new());
        }
        if let Some(oid) = system.strip_prefix("urn:oid:") {
            return (String::new(), oid.to_string(), "ISO".into());
        }
        if let Some(rest) = system.strip_prefix(&self.fallback_base) {
            if let Some(name) = rest.strip_prefix("authority/") {
                return (name.to_string(), String::new(), String::new());
            }
            if rest.starts_with("facility/") {
                return Default::default();
            }
        }
        if self.facilities.values().any(|s| s == system) || system.is_empty() {
            return Default::default();
        }
        (String::new(), system.to_string(), "URI".into())
    }
}

/// The id of the `rtype` whose business key is `key` (an identifier's system and value, say):
/// 32 hex digits of HMAC-SHA-256 under this installation's `secret`, the same every time here
/// and unguessable elsewhere: without the secret, an id would tell anyone who can try ids
/// whether a given MRN is a patient here. An empty secret gives the plain SHA-256 of the key,
/// which installations that took HL7v2 messages before the secret existed keep using (their
/// resources' ids must not change).
pub fn stable_id(secret: &[u8], rtype: &str, key: &[&str]) -> String {
    let mut text = rtype.to_string();
    for k in key {
        text.push('|');
        text.push_str(k);
    }
    let digest = match secret {
        [] => aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes())
            .as_ref()
            .to_vec(),
        secret => {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
            aws_lc_rs::hmac::sign(&key, text.as_bytes())
                .as_ref()
                .to_vec()
        }
    };
    hex::encode(&digest[..16])
}

/// This installation's id secret: made (32 random bytes, hex) the first time a message is
/// mapped, kept in the database, shared by every process on it. A database that took HL7v2
/// messages before the secret existed keeps the plain hash (an empty secret), and the log says
/// so: its resources' ids must not change under it.
pub fn secret(store: &Store) -> Result<Arc<str>, StoreError> {
    store.installation_value("hl7v2-id-secret", |conn| {
        use crate::store::schema::hl7v2_messages as m;
        use diesel::prelude::*;
        let earlier: i64 = m::table.count().get_result(conn)?;
        if earlier > 0 {
            tracing::warn!(
                "HL7v2 resource ids on this database stay plain hashes of their identifiers \
                 (messages were taken before the id secret existed, and ids must not change)"
            );
            return Ok(String::new());
        }
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes)
            .map_err(|_| StoreError::Database("no random bytes for the id secret".into()))?;
        Ok(hex::encode(bytes))
    })
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
    fn an_identifier_s_system_gives_back_its_authority() {
        let s = Systems::get();
        let back = |system: &str| {
            let (n, u, k) = s.authority_of(system);
            s.for_authority(&n, &u, &k, "F")
        };
        for system in [
            "urn:oid:1.2.840.114350.1",
            "http://hl7.org/fhir/sid/us-ssn",
            "http://emrsync.org/hl7v2/authority/GH",
            "https://example.org/mrn",
        ] {
            assert_eq!(back(system), system);
        }
        assert_eq!(
            s.authority_of("http://emrsync.org/hl7v2/facility/F/id"),
            Default::default()
        );
    }

    #[test]
    fn stable_ids_are_stable_and_distinct() {
        for secret in [&b""[..], b"an installation's secret"] {
            let a = stable_id(secret, "Patient", &["urn:oid:1.2", "42"]);
            assert_eq!(a, stable_id(secret, "Patient", &["urn:oid:1.2", "42"]));
            assert_ne!(a, stable_id(secret, "Patient", &["urn:oid:1.2", "43"]));
            assert_ne!(a, stable_id(secret, "Encounter", &["urn:oid:1.2", "42"]));
            assert_eq!(a.len(), 32);
        }
        // another installation's ids are another's: nobody can work out one from an MRN
        let mrn = ["urn:oid:1.2", "42"];
        assert_ne!(
            stable_id(b"one", "Patient", &mrn),
            stable_id(b"two", "Patient", &mrn)
        );
        assert_ne!(
            stable_id(b"one", "Patient", &mrn),
            stable_id(b"", "Patient", &mrn)
        );
    }
}
