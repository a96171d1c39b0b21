//! Subsetted views of a resource: `_summary` (true, text, data) and `_elements`. A subsetted
//! resource carries the SUBSETTED tag so that no client mistakes it for the whole record
//! (and writes it back, losing the rest).

use super::definitions::Definitions;
use serde_json::{Value, json};

/// `_summary` values other than `count` and `false`, which do not shape a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    /// The elements the spec marks isSummary.
    True,
    /// Text, id, meta and the mandatory elements.
    Text,
    /// Everything but the narrative.
    Data,
}

impl Summary {
    /// The view a `_summary` code names (`count` and `false` name none).
    pub fn from_code(code: &str) -> Option<Summary> {
        match code {
            "true" => Some(Summary::True),
            "text" => Some(Summary::Text),
            "data" => Some(Summary::Data),
            _ => None,
        }
    }
}

/// The top-level element names an `_elements` list asks for (`Patient.name` is `name`).
pub fn element_names(list: &str) -> Vec<String> {
    list.split(',')
        .map(|e| e.trim().rsplit('.').next().unwrap_or("").to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

/// The top-level element a JSON key of `rtype` belongs to: `valueQuantity` → `value`,
/// `_birthDate` → `birthDate`.
fn element_of<'k>(rtype: &str, key: &'k str) -> &'k str {
    let key = key.strip_prefix('_').unwrap_or(key);
    let Some(structure) = Definitions::get().structure(rtype) else {
        return key;
    };
    if structure.contains_key(key) {
        return key;
    }
    structure
        .iter()
        .filter(|(name, def)| def.is_choice() && key.starts_with(name.as_str()))
        .map(|(name, _)| &key[..name.len()])
        .max_by_key(|n| n.len())
        .unwrap_or(key)
}

fn is_mandatory(rtype: &str, element: &str) -> bool {
    Definitions::get()
        .structure(rtype)
        .and_then(|s| s.get(element))
        .is_some_and(|d| d.is_required())
}

/// Keep the top-level elements `keep` says yes to (and `resourceType`, `id`, `meta`), then
/// tag the resource as subsetted.
fn retain(resource: &mut Value, keep: impl Fn(&str, &str) -> bool) {
    let rtype = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    obj.retain(|key, _| {
        matches!(key.as_str(), "resourceType" | "id" | "meta")
            || keep(&rtype, element_of(&rtype, key))
    });
    let meta = obj.entry("meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut() {
            tags.push(json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED",
                "display": "subsetted"
            }));
        }
    }
}

/// The `_summary` view of `resource`.
pub fn summarize(resource: &mut Value, summary: Summary) {
    match summary {
        Summary::True => retain(resource, |t, e| Definitions::get().is_summary(t, e)),
        Summary::Text => retain(resource, |t, e| e == "text" || is_mandatory(t, e)),
        Summary::Data => retain(resource, |_, e| e != "text"),
    }
}

/// The `_elements` view: the named top-level elements, plus the mandatory ones.
pub fn elements(resource: &mut Value, wanted: &[String]) {
    retain(resource, |t, e| {
        wanted.iter().any(|w| w == e) || is_mandatory(t, e)
    });
}

/// `_summary` and `_elements` among a request's query parameters applied to `resource`;
/// whether any was (`_summary=false` is none). `count` has no meaning for one resource.
pub fn apply_params(resource: &mut Value, params: &[(String, String)]) -> Result<bool, String> {
    let mut shaped = false;
    for (k, v) in params {
        match (k.as_str(), v.as_str()) {
            ("_summary", "false") => continue,
            ("_summary", code) => match Summary::from_code(code) {
                Some(summary) => summarize(resource, summary),
                None => {
                    return Err(format!(
                        "_summary '{code}' must be true, text, data or false here"
                    ));
                }
            },
            ("_elements", list) => elements(resource, &element_names(list)),
            _ => continue,
        }
        shaped = true;
    }
    Ok(shaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient() -> Value {
        json!({
            "resourceType": "Patient", "id": "p1",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
            "name": [{"family": "Chalmers"}], "birthDate": "1974-12-25",
            "_birthDate": {"extension": []}, "deceasedBoolean": false,
            "contact": [{"name": {"family": "Du Marché"}}], "communication": []
        })
    }

    fn tagged(v: &Value) -> bool {
        v["meta"]["tag"][0]["code"] == "SUBSETTED"
    }

    #[test]
    fn summary_keeps_the_summary_elements() {
        let mut p = patient();
        summarize(&mut p, Summary::True);
        assert!(p.get("name").is_some() && p.get("birthDate").is_some());
        assert!(p.get("_birthDate").is_some() && p.get("deceasedBoolean").is_some());
        assert!(p.get("contact").is_none() && p.get("text").is_none());
        assert!(tagged(&p));
        let mut p = patient();
        summarize(&mut p, Summary::Data);
        assert!(p.get("text").is_none() && p.get("contact").is_some());
        let mut p = patient();
        summarize(&mut p, Summary::Text);
        assert!(p.get("text").is_some() && p.get("name").is_none());
    }

    #[test]
    fn elements_keep_what_was_named_and_what_is_mandatory() {
        let mut p = patient();
        elements(&mut p, &["birthDate".into(), "deceased".into()]);
        let mut keys: Vec<&String> = p.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "_birthDate",
                "birthDate",
                "deceasedBoolean",
                "id",
                "meta",
                "resourceType"
            ]
        );
        let mut o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 1}, "note": []});
        elements(&mut o, &["value".into()]);
        // status and code are mandatory in Observation
        assert!(
            o.get("status").is_some()
                && o.get("code").is_some()
                && o.get("valueQuantity").is_some()
        );
        assert!(o.get("note").is_none());
    }
}
