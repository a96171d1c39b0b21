//! Per-target value maps: a target that knows its own codes (a lab's local test codes, an
//! EMR's location or sex codes) names ConceptMaps of this server's terminology service, from
//! the codes emrsync holds to the target's; every coding of what the target is sent that one of
//! them maps gets the target's code first, the original kept after it (in HL7v2 the CWE's
//! alternate triplet, in FHIR a second coding). The maps are ordinary ConceptMaps: loaded,
//! versioned and tested with `$translate` like any other, and read through the terminology
//! cache, so a changed map applies to the next message without a restart.

use crate::terminology::Terminology;
use crate::terminology::concept_map::{Maps, Question, is_match};
use serde_json::{Value, json};
use std::sync::Arc;

/// The maps of one target, ready to apply.
pub struct ValueMaps {
    maps: Arc<Maps>,
    urls: Vec<String>,
}

/// The deepest a resource is walked for codings (a resource nests a handful of levels; the
/// bound keeps a hostile one from recursing without end).
const MAX_DEPTH: usize = 32;

impl ValueMaps {
    /// `urls`' maps from `terminology`; `Ok(None)` without any; `Err` names a map the server
    /// does not know (the message waits in the exception queue until it is loaded).
    pub fn of(terminology: &Terminology, urls: &[String]) -> Result<Option<ValueMaps>, String> {
        if urls.is_empty() {
            return Ok(None);
        }
        let maps = terminology
            .maps()
            .map_err(|e| format!("the value maps cannot be read: {e}"))?;
        if let Some(unknown) = urls.iter().find(|u| !maps.knows(u)) {
            return Err(format!(
                "the value map {unknown} is not a ConceptMap of this server"
            ));
        }
        Ok(Some(ValueMaps {
            maps,
            urls: urls.to_vec(),
        }))
    }

    /// Every `coding` array in `v` with the target's codes put first.
    pub fn apply(&self, v: &mut Value) {
        self.walk(v, 0);
    }

    fn walk(&self, v: &mut Value, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        match v {
            Value::Object(o) => {
                if let Some(Value::Array(codings)) = o.get_mut("coding") {
                    let mut out = Vec::with_capacity(codings.len() + 1);
                    for c in codings.iter() {
                        if let Some(mapped) = self.translate(c)
                            && !codings.contains(&mapped)
                            && !out.contains(&mapped)
                        {
                            out.push(mapped);
                        }
                    }
                    out.append(codings);
                    *codings = out;
                }
                for (k, child) in o.iter_mut() {
                    if k != "coding" {
                        self.walk(child, depth + 1);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.walk(i, depth + 1)),
            _ => {}
        }
    }

    /// The target's coding for `c`, by the first map that has one.
    fn translate(&self, c: &Value) -> Option<Value> {
        let (system, code) = (c["system"].as_str()?, c["code"].as_str()?);
        self.urls.iter().find_map(|url| {
            let q = Question {
                url: Some(url.clone()),
                system: Some(system.to_string()),
                code: code.to_string(),
                ..Question::default()
            };
            let found = self.maps.translate(&q);
            let t = found
                .iter()
                .map(|m| &m.target)
                .find(|t| is_match(&t.equivalence) && t.code.is_some())?;
            let mut coding = json!({"code": t.code});
            if let Some(s) = &t.system {
                coding["system"] = json!(s);
            }
            if let Some(d) = &t.display {
                coding["display"] = json!(d);
            }
            Some(coding)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_targets_code_goes_first_and_the_original_stays() {
        let maps = Maps::build(&[json!({
            "resourceType": "ConceptMap", "url": "http://h.org/cm/lab", "status": "active",
            "group": [{"source": "http://loinc.org", "target": "http://lab.example.org/codes",
                       "element": [{"code": "2823-3", "target": [{"code": "K", "display": "Potassium",
                                                                  "equivalence": "equivalent"}]},
                                   {"code": "1-8", "target": [{"equivalence": "unmatched"}]}]}]
        })]);
        let vm = ValueMaps {
            maps: Arc::new(maps),
            urls: vec!["http://h.org/cm/lab".into()],
        };
        let mut obs = json!({"code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
            "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "1-8"}]}}]});
        vm.apply(&mut obs);
        assert_eq!(
            obs["code"]["coding"],
            json!([{"system": "http://lab.example.org/codes", "code": "K", "display": "Potassium"},
                   {"system": "http://loinc.org", "code": "2823-3"}])
        );
        // an unmatched code is left as it is
        assert_eq!(
            obs["component"][0]["code"]["coding"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // applying twice changes nothing more
        let once = obs.clone();
        vm.apply(&mut obs);
        assert_eq!(obs, once);
    }
}
