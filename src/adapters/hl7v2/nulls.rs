//! HL7 v2's null semantics, applied when a message restates a Patient or an Encounter that is
//! already stored. In v2 an empty field says nothing ("no information"), and only `""` says
//! "delete this": a thinner PID (an order or a lab result names the patient with its MRN and
//! name, no more) must not erase what the ADT feed wrote, nor a transfer that names only the
//! new bed the visit's attending doctor. So, per element of the Patient or Encounter:
//! - present in the message: replaces what is stored;
//! - absent: what is stored is kept;
//! - `""` in its field: removed (the maps report these, see `map::Context::clear`).
//!
//! Identifiers are merged by system: the message's identifiers replace the stored ones of the
//! same systems, and those of other systems (a national id from the ADT feed, another
//! facility's MRN) are kept. Extensions are merged by URL the same way (race, ethnicity,
//! religion and mother's maiden name come from different fields). An Encounter's class that
//! the message does not give (PV1-2 empty: the map says unknown, as the element is required)
//! keeps the stored one. Other resource types are restated whole, as their messages state them
//! whole (a result, an order, a document).

use serde_json::{Map, Value};

/// Elements of a choice (`deceased[x]`): one kept or replaced as a whole.
const CHOICES: &[&str] = &["deceased", "multipleBirth"];

/// The element a key belongs to: a choice's root, a primitive's extensions (`_birthDate`)
/// with the primitive.
fn root(key: &str) -> &str {
    let key = key.strip_prefix('_').unwrap_or(key);
    CHOICES
        .iter()
        .find(|c| key.starts_with(**c))
        .copied()
        .unwrap_or(key)
}

/// `new` over `old`: what the message said, with what it did not say kept, but for the
/// elements in `cleared`.
pub fn patient_over(new: &Value, old: &Value, cleared: &[&str]) -> Value {
    let (Some(n), Some(o)) = (new.as_object(), old.as_object()) else {
        return new.clone();
    };
    let mut out: Map<String, Value> = n.clone();
    let said: Vec<&str> = n.keys().map(|k| root(k)).collect();
    for (key, value) in o {
        let r = root(key);
        let bookkeeping = matches!(key.as_str(), "meta" | "id" | "resourceType" | "text");
        if bookkeeping || said.contains(&r) || cleared.contains(&r) {
            continue;
        }
        out.insert(key.clone(), value.clone());
    }
    for (list, by) in [("identifier", "system"), ("extension", "url")] {
        if let (Some(Value::Array(new)), Some(Value::Array(old))) = (n.get(list), o.get(list))
            && !cleared.contains(&list)
        {
            let keys: Vec<&Value> = new.iter().map(|i| &i[by]).collect();
            let mut merged = new.clone();
            merged.extend(old.iter().filter(|i| !keys.contains(&&i[by])).cloned());
            out.insert(list.into(), Value::Array(merged));
        }
    }
    Value::Object(out)
}

/// `new` over `old` for an Encounter: as `patient_over`, and a class the message did not give
/// (the map's unknown) keeps the stored class.
pub fn encounter_over(new: &Value, old: &Value, cleared: &[&str]) -> Value {
    let mut out = patient_over(new, old, cleared);
    let unknown = new["class"]["code"] == "UNK"
        && new["class"]["system"] == "http://terminology.hl7.org/CodeSystem/v3-NullFlavor";
    if unknown && old.get("class").is_some() {
        out["class"] = old["class"].clone();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn adt() -> Value {
        json!({"resourceType": "Patient", "id": "p", "meta": {"versionId": "1"},
               "identifier": [{"system": "urn:mrn", "value": "1"}, {"system": "urn:ssn", "value": "123"}],
               "name": [{"family": "Everyman"}], "address": [{"city": "Springfield"}],
               "deceasedDateTime": "2026-01-01", "link": [{"type": "replaces"}]})
    }

    #[test]
    fn a_thinner_pid_keeps_what_it_does_not_say() {
        let lab = json!({"resourceType": "Patient", "id": "p",
                         "identifier": [{"system": "urn:mrn", "value": "1"}],
                         "name": [{"family": "Everyman", "given": ["Adam"]}]});
        let merged = patient_over(&lab, &adt(), &[]);
        assert_eq!(
            merged["name"],
            json!([{"family": "Everyman", "given": ["Adam"]}]),
            "said: replaced"
        );
        assert_eq!(
            merged["address"],
            json!([{"city": "Springfield"}]),
            "not said: kept"
        );
        assert_eq!(
            merged["identifier"].as_array().unwrap().len(),
            2,
            "{merged}"
        );
        assert_eq!(merged["link"], json!([{"type": "replaces"}]));
        assert!(merged.get("meta").is_none());
    }

    #[test]
    fn a_cleared_field_is_removed_and_a_choice_is_replaced_whole() {
        let death = json!({"resourceType": "Patient", "id": "p", "deceasedBoolean": true});
        let merged = patient_over(&death, &adt(), &["address"]);
        assert!(merged.get("address").is_none(), "{merged}");
        assert!(merged.get("deceasedDateTime").is_none(), "{merged}");
        assert_eq!(merged["deceasedBoolean"], true);
    }

    #[test]
    fn a_visit_message_without_a_class_keeps_the_stored_one() {
        let stored = json!({"resourceType": "Encounter", "id": "e", "status": "in-progress",
                            "class": {"code": "IMP"}, "location": [{"status": "active"}]});
        let thin = json!({"resourceType": "Encounter", "id": "e", "status": "finished",
                          "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
                                    "code": "UNK"}});
        let merged = encounter_over(&thin, &stored, &[]);
        assert_eq!(merged["class"]["code"], "IMP");
        assert_eq!(merged["status"], "finished");
        assert_eq!(merged["location"], stored["location"]);
        assert!(
            encounter_over(&thin, &stored, &["location"])
                .get("location")
                .is_none()
        );
    }
}
