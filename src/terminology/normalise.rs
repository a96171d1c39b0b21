//! Local codes normalised on ingest: every CodeableConcept of an incoming resource whose codes
//! a normalisation map translates gains the standard coding beside the local one (which is
//! kept). A local code that no map translates is kept as it came, the write goes on, and the
//! code is counted on the unmapped codes worklist (`GET /admin/terminology/unmapped`), so the
//! integration team sees which maps to write.
//!
//! A normalisation map is a ConceptMap that says so in its `useContext`: the code
//! `normalise-on-ingest` of `http://emrsync.org/fhir/CodeSystem/usage-context`, whose value
//! lists the sending systems it is for (codings' codes or the text, `application@facility` as
//! an HL7v2 sender is known; `*` or none for every source). An optional `element` context
//! (`Observation.code`) confines it to CodeableConcepts at those paths. Its groups map a local
//! system's codes (as the resource carries them, e.g.
//! `http://emrsync.org/hl7v2/local-code-system/L`) to the standard system's.

use super::concept_map::{Maps, Question, is_match};
use super::{TermError, Terminology};
use crate::fhir::Issue;
use crate::ingest::{Channel, Source};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const CONTEXT_SYSTEM: &str = "http://emrsync.org/fhir/CodeSystem/usage-context";

/// Nodes of one resource walked at most (a resource within the body limits has far fewer).
const MAX_NODES: usize = 200_000;
/// Distinct unmapped codes held between flushes; more are counted once flushed room allows.
const MAX_PENDING: usize = 10_000;

/// Code systems taken as standard: a CodeableConcept with a coding of one of them is not on
/// the worklist, whatever local codings it also has.
const STANDARD: [&str; 12] = [
    "http://loinc.org",
    "http://snomed.info/sct",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
    "http://unitsofmeasure.org",
    "http://hl7.org/fhir/sid/",
    "http://terminology.hl7.org/CodeSystem/",
    "http://hl7.org/fhir/",
    "urn:ietf:",
    "urn:iso:",
    "http://www.ama-assn.org/go/cpt",
    "http://www.whocc.no/atc",
    "http://dicom.nema.org/",
];

pub fn is_standard(system: &str) -> bool {
    STANDARD.iter().any(|s| system.starts_with(s))
}

/// One normalisation map, with where it applies.
#[derive(Debug)]
struct Rule {
    /// Sending systems (None: every one).
    sources: Option<Vec<String>>,
    /// Element paths (None: every CodeableConcept).
    elements: Option<Vec<String>>,
    map: Maps,
}

/// Every normalisation map of the server.
#[derive(Debug, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

fn context_values(cm: &Value, code: &str) -> Option<Option<Vec<String>>> {
    let ctx = cm["useContext"]
        .as_array()?
        .iter()
        .find(|u| u["code"]["system"] == CONTEXT_SYSTEM && u["code"]["code"] == code)?;
    let v = &ctx["valueCodeableConcept"];
    let mut values: Vec<String> = v["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["code"].as_str().map(str::to_string))
        .collect();
    if let Some(t) = v["text"].as_str() {
        values.extend(
            t.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        );
    }
    Some(match values.iter().any(|s| s == "*") || values.is_empty() {
        true => None,
        false => Some(values),
    })
}

impl Rules {
    pub fn build(maps: &[Value]) -> Rules {
        let rules = maps
            .iter()
            .filter_map(|cm| {
                let sources = context_values(cm, "normalise-on-ingest")?;
                let elements = context_values(cm, "element").flatten();
                Some(Rule {
                    sources,
                    elements,
                    map: Maps::build(std::slice::from_ref(cm)),
                })
            })
            .collect();
        Rules { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a map translates `system|code` met at `element` from `source`.
    pub fn translates(&self, source: &str, element: &str, system: &str, code: &str) -> bool {
        !self.translate(source, element, system, code).is_empty()
    }

    /// The standard codings for `system|code` met at `element` from `source`.
    fn translate(&self, source: &str, element: &str, system: &str, code: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for r in &self.rules {
            if r.sources
                .as_ref()
                .is_some_and(|s| !s.iter().any(|x| x == source))
            {
                continue;
            }
            if r.elements
                .as_ref()
                .is_some_and(|e| !e.iter().any(|x| x == element))
            {
                continue;
            }
            let q = Question {
                system: Some(system.to_string()),
                code: code.to_string(),
                ..Default::default()
            };
            for m in r.map.translate(&q) {
                let t = m.target;
                let (Some(system), Some(code)) = (t.system, t.code) else {
                    continue;
                };
                if !is_match(&t.equivalence) {
                    continue;
                }
                let mut coding = json!({"system": system, "code": code});
                if let Some(d) = t.display {
                    coding["display"] = json!(d);
                }
                if !out.contains(&coding) {
                    out.push(coding);
                }
            }
        }
        out
    }
}

/// A local code met that no map translated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Unmapped {
    pub system: String,
    pub code: String,
    pub source: String,
    pub element: String,
}

#[derive(Debug, Clone)]
pub struct Met {
    pub display: Option<String>,
    pub first: i64,
    pub last: i64,
    pub count: i64,
    pub example: String,
}

/// The unmapped codes met since the last flush (`flush` writes them to the store).
#[derive(Debug, Default)]
pub struct Worklist {
    pending: Mutex<HashMap<Unmapped, Met>>,
}

impl Worklist {
    fn note(&self, key: Unmapped, display: Option<&str>, example: String) {
        let now = crate::fhir::resource::now_micros();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING && !pending.contains_key(&key) {
            return;
        }
        let met = pending.entry(key).or_insert_with(|| Met {
            display: display.map(str::to_string),
            first: now,
            last: now,
            count: 0,
            example,
        });
        met.last = now;
        met.count += 1;
    }

    /// What was met since the last call.
    pub fn take(&self) -> Vec<(Unmapped, Met)> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.drain().collect()
    }
}

/// The normalisation hook on the ingest path.
#[derive(Debug)]
pub struct Normaliser {
    pub terminology: Arc<Terminology>,
    pub worklist: Arc<Worklist>,
}

impl crate::ingest::hooks::CodeNormaliser for Normaliser {
    fn normalise(
        &self,
        source: &Source,
        correlation_id: &str,
        rtype: &str,
        resource: &mut Value,
    ) -> Vec<Issue> {
        let rules = match self.terminology.normalisation() {
            Ok(r) => r,
            Err(e) => {
                return vec![Issue::warning(
                    "processing",
                    format!("codes were not normalised: {e}"),
                )];
            }
        };
        // the worklist is for feeds (HL7v2, later the vendor adapters): a REST client's own
        // codes are its to choose
        let tracked = !matches!(
            source.channel,
            Channel::Rest | Channel::Mpi | Channel::Load | Channel::Terminology | Channel::Ops
        );
        if rules.is_empty() && !tracked {
            return Vec::new();
        }
        let example = format!("{rtype} of {correlation_id}");
        let note = |element: &str, system: &str, code: &str, display: Option<&str>| {
            self.worklist.note(
                Unmapped {
                    system: system.into(),
                    code: code.into(),
                    source: source.system.clone(),
                    element: element.into(),
                },
                display,
                example.clone(),
            );
        };
        walk(resource, rtype, &mut |element, coded| {
            if coded.get("coding").is_none() {
                // a Quantity in a local unit system: its code becomes the standard one (a
                // Quantity has one), its `unit` keeps the sender's text
                let (Some(system), Some(code)) = (coded["system"].as_str(), coded["code"].as_str())
                else {
                    return;
                };
                if is_standard(system) {
                    return;
                }
                let found = rules.translate(&source.system, element, system, code);
                let Some(t) = found
                    .into_iter()
                    .find(|t| t["system"].as_str().is_some_and(is_standard))
                else {
                    if tracked {
                        note(element, system, code, coded["unit"].as_str());
                    }
                    return;
                };
                if coded.get("unit").is_none() {
                    coded["unit"] = json!(code);
                }
                coded["system"] = t["system"].clone();
                coded["code"] = t["code"].clone();
                return;
            }
            let Some(codings) = coded.get("coding").and_then(Value::as_array) else {
                return;
            };
            let mut added = Vec::new();
            for c in codings {
                let (Some(system), Some(code)) = (c["system"].as_str(), c["code"].as_str()) else {
                    continue;
                };
                if is_standard(system) {
                    continue;
                }
                for t in rules.translate(&source.system, element, system, code) {
                    if !codings.contains(&t) && !added.contains(&t) {
                        added.push(t);
                    }
                }
            }
            let has_standard = codings
                .iter()
                .chain(&added)
                .any(|c| c["system"].as_str().is_some_and(is_standard));
            if tracked && !has_standard {
                for c in codings {
                    if let (Some(system), Some(code)) = (c["system"].as_str(), c["code"].as_str()) {
                        note(element, system, code, c["display"].as_str());
                    }
                }
            }
            if let Some(list) = coded.get_mut("coding").and_then(Value::as_array_mut) {
                list.extend(added);
            }
        });
        Vec::new()
    }

    fn flush(&self) {
        flush(self.terminology.store(), &self.worklist);
    }
}

/// Call `f` on every CodeableConcept (an object with a `coding` array) and every coded
/// Quantity (`system` and `code` beside a `value` or `unit`) of `resource`, with its path
/// (`Observation.code`, `Observation.component.code`, `Observation.valueQuantity`). Bounded:
/// serde_json reads no document deeper than 128 levels, and the walk stops there and after
/// `MAX_NODES` nodes.
fn walk(resource: &mut Value, rtype: &str, f: &mut dyn FnMut(&str, &mut Value)) {
    let mut budget = MAX_NODES;
    visit(resource, rtype, 0, &mut budget, f);
}

fn is_coded_quantity(v: &Value) -> bool {
    v["system"].is_string()
        && v["code"].is_string()
        && (v["value"].is_number() || v["unit"].is_string())
}

fn visit(
    value: &mut Value,
    path: &str,
    depth: usize,
    budget: &mut usize,
    f: &mut dyn FnMut(&str, &mut Value),
) {
    if depth > 128 || *budget == 0 {
        return;
    }
    *budget -= 1;
    if value.get("coding").is_some_and(Value::is_array) || is_coded_quantity(value) {
        f(path, value);
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if v.is_object() || v.is_array() {
                    visit(v, &format!("{path}.{k}"), depth + 1, budget, f);
                }
            }
        }
        Value::Array(items) => {
            for v in items.iter_mut() {
                visit(v, path, depth + 1, budget, f);
            }
        }
        _ => {}
    }
}

impl Terminology {
    /// The normalisation maps, indexed.
    pub fn normalisation(&self) -> Result<Arc<Rules>, TermError> {
        self.cached((&self.rules, &[super::CONCEPT_MAPS]), (), || {
            let maps = self.concept_maps()?;
            Ok(Arc::new(Rules::build(&maps)))
        })
    }
}

/// Write what the worklist met since the last flush; what could not be written waits for the
/// next one. Returns how many codes were written.
pub fn flush(store: &crate::store::Store, worklist: &Worklist) -> usize {
    let taken = worklist.take();
    if taken.is_empty() {
        return 0;
    }
    let rows: Vec<super::tables::UnmappedRow> = taken
        .iter()
        .map(|(k, m)| super::tables::UnmappedRow {
            system: k.system.clone(),
            code: k.code.clone(),
            source: k.source.clone(),
            element: k.element.clone(),
            display: m.display.clone(),
            first_seen: m.first,
            last_seen: m.last,
            count: m.count,
            example: m.example.clone(),
        })
        .collect();
    match store.write_rows(|c| super::tables::count_unmapped(c, &rows)) {
        Ok(()) => rows.len(),
        Err(e) => {
            tracing::warn!(error = %e, codes = rows.len(), "the unmapped codes worklist was not written; kept for the next try");
            let mut pending = worklist.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (k, m) in taken {
                let e = pending.entry(k).or_insert(Met {
                    count: 0,
                    ..m.clone()
                });
                e.count += m.count;
                e.first = e.first.min(m.first);
                e.last = e.last.max(m.last);
            }
            0
        }
    }
}

/// The unmapped codes worklist as the team reads it: most met first, without the codes a map
/// written since translates.
pub fn worklist(
    t: &Terminology,
    source: Option<&str>,
    limit: i64,
) -> Result<Vec<super::tables::UnmappedRow>, TermError> {
    let rules = t.normalisation()?;
    let rows = t
        .store()
        .read(|c| super::tables::unmapped(c, source, limit))?;
    Ok(rows
        .into_iter()
        .filter(|r| !rules.translates(&r.source, &r.element, &r.system, &r.code))
        .collect())
}
