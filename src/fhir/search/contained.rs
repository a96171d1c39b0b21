//! Contained resources in the search index. Each resource a container holds in `contained` is
//! indexed with its own type's parameters under a key of its own, `Type/id#local` (the
//! container's type and id, the contained resource's local id), which no stored resource's id
//! can take (ids have neither `/` nor `#`). Searches of stored resources never see these rows
//! (they start from `resources`); `_contained=true` searches them (`store::search::contained`),
//! and a container's local references (`"#med1"`) point at the key, so that a chain such as
//! `Observation?subject.name=Taylor` looks inside the contained Patient, as R4 asks.

use super::index::{Entries, ReferenceEntry, own_entries};
use serde_json::Value;

/// Contained resources indexed per container, at most (a Bundle-sized container still makes
/// a bounded number of index rows; the rest are stored, not searchable).
pub const MAX_CONTAINED: usize = 100;

/// One contained resource's index entries.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainedEntries {
    pub resource_type: String,
    /// Its id inside the container (`contained[].id`).
    pub local_id: String,
    pub entries: Entries,
}

/// The key a contained resource is indexed under.
pub fn key(container_type: &str, container_id: &str, local_id: &str) -> String {
    format!("{container_type}/{container_id}#{local_id}")
}

/// The container's type and id, and the local id, of a key (`None` for a stored resource's id).
pub fn split_key(key: &str) -> Option<(&str, &str, &str)> {
    let (container, local) = key.split_once('#')?;
    let (rtype, id) = container.split_once('/')?;
    Some((rtype, id, local))
}

/// The contained resource `local_id` of `container`.
pub fn find<'a>(container: &'a Value, local_id: &str) -> Option<&'a Value> {
    container
        .get("contained")?
        .as_array()?
        .iter()
        .find(|c| c.get("id").and_then(Value::as_str) == Some(local_id))
}

/// The entries of each contained resource of `container` (which has a type and an id: one
/// being validated has no key yet, and none).
pub fn index_contained(container: &Value) -> Vec<ContainedEntries> {
    let (Some(rtype), Some(id)) = type_and_id(container) else {
        return Vec::new();
    };
    let Some(list) = container.get("contained").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut seen = std::collections::HashSet::new();
    list.iter()
        .take(MAX_CONTAINED)
        .filter_map(|c| {
            let local_id = c.get("id").and_then(Value::as_str)?;
            let ctype = c.get("resourceType").and_then(Value::as_str)?;
            // a local id names one resource: the first that has it, as `#id` resolves
            if !seen.insert(local_id) {
                return None;
            }
            // (no words of their own: the container's `_content` already has them)
            let mut entries = own_entries(c);
            // its local references: to its siblings, or `#` to the container itself
            resolve_local(&mut entries.references, container, (rtype, id));
            Some(ContainedEntries {
                resource_type: ctype.to_string(),
                local_id: local_id.to_string(),
                entries,
            })
        })
        .collect()
}

fn type_and_id(resource: &Value) -> (Option<&str>, Option<&str>) {
    (
        resource.get("resourceType").and_then(Value::as_str),
        resource.get("id").and_then(Value::as_str),
    )
}

/// Turn the local references among `references` (`url` `#x`, as `index` leaves them) into
/// references to the keys of `container`'s contained resources (`#` alone: the container);
/// one that names nothing the container holds is dropped.
pub fn resolve_local(
    references: &mut Vec<ReferenceEntry>,
    container: &Value,
    (rtype, id): (&str, &str),
) {
    references.retain_mut(|r| {
        let Some(local) = r.url.as_deref().and_then(|u| u.strip_prefix('#')) else {
            return true;
        };
        let target = if local.is_empty() {
            Some((rtype.to_string(), id.to_string()))
        } else {
            find(container, local)
                .and_then(|c| c.get("resourceType").and_then(Value::as_str))
                .map(|t| (t.to_string(), key(rtype, id, local)))
        };
        match target {
            Some((t, k)) => {
                r.target_type = Some(t);
                r.target_id = Some(k);
                r.url = None;
                true
            }
            None => false,
        }
    });
}

/// `resolve_local` for a stored resource's own references (`#x` to what it contains).
pub fn resolve_own(references: &mut Vec<ReferenceEntry>, resource: &Value) {
    match type_and_id(resource) {
        (Some(rtype), Some(id)) => resolve_local(references, resource, (rtype, id)),
        // nothing to point at without a key: local references are not searchable
        _ => references.retain(|r| !r.url.as_deref().is_some_and(|u| u.starts_with('#'))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contained_resources_are_indexed_under_their_container_s_key_and_local_references_point_there()
     {
        let rx = json!({
            "resourceType": "MedicationRequest", "id": "rx1", "status": "active",
            "intent": "order", "subject": {"reference": "Patient/p1"},
            "contained": [
                {"resourceType": "Medication", "id": "med1",
                 "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049502"}]}},
                {"resourceType": "Medication", "id": "med2", "manufacturer": {"reference": "#org"}},
                {"resourceType": "Organization", "id": "org", "name": "Acme"},
                {"resourceType": "Substance", "id": "org"}
            ],
            "medicationReference": {"reference": "#med1"},
            "requester": {"reference": "#nobody"}
        });
        let entries = crate::fhir::search::index::index(&rx);
        let medication = entries
            .references
            .iter()
            .find(|r| r.param == "medication")
            .unwrap();
        assert_eq!(medication.target_type.as_deref(), Some("Medication"));
        assert_eq!(
            medication.target_id.as_deref(),
            Some("MedicationRequest/rx1#med1")
        );
        // what names nothing contained is not a reference to search by
        assert!(!entries.references.iter().any(|r| r.param == "requester"));
        let contained = index_contained(&rx);
        // (the Substance that reuses a local id is not indexed)
        assert_eq!(contained.len(), 3);
        assert_eq!(contained[0].resource_type, "Medication");
        assert!(
            contained[0]
                .entries
                .tokens
                .iter()
                .any(|t| t.param == "code" && t.code.as_deref() == Some("1049502"))
        );
        let maker = &contained[1].entries.references[0];
        assert_eq!(
            (maker.target_type.as_deref(), maker.target_id.as_deref()),
            (Some("Organization"), Some("MedicationRequest/rx1#org"))
        );
        assert_eq!(
            split_key("MedicationRequest/rx1#org"),
            Some(("MedicationRequest", "rx1", "org"))
        );
        assert_eq!(split_key("rx1"), None);
    }
}
