//! What a resource is found by: for each of its type's search parameters, the values its
//! expression selects, turned into index entries of the parameter's kind (strings normalised
//! for case- and accent-insensitive matching, codes with their systems, references split into
//! type and id, dates as ranges, quantities with their units).

use super::date::DateRange;
use super::params::{ParamType, SearchParam, SearchParams};
use crate::fhir::definitions::Definitions;
use crate::fhir::fhirpath::{Item, Out, evaluate, evaluate_on};
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

#[derive(Debug, Clone, PartialEq)]
pub struct StringEntry {
    pub param: &'static str,
    /// Lower case, accents removed: what `name=` and `:contains` compare.
    pub norm: String,
    /// As written: what `:exact` compares.
    pub exact: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenEntry {
    pub param: &'static str,
    pub system: Option<String>,
    pub code: Option<String>,
    /// Normalised display or text, for `:text`.
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceEntry {
    pub param: &'static str,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// An absolute URL or canonical that is not a local `Type/id`.
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DateEntry {
    pub param: &'static str,
    pub range: DateRange,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NumberEntry {
    pub param: &'static str,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuantityEntry {
    pub param: &'static str,
    pub low: f64,
    pub high: f64,
    pub system: Option<String>,
    pub code: Option<String>,
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UriEntry {
    pub param: &'static str,
    pub value: String,
}

/// A composite of a token and a second value, taken from the same item (the same component).
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeEntry {
    pub param: &'static str,
    pub first: TokenEntry,
    pub second: Second,
    /// A three-part composite's last number (a coordinate's end).
    pub third: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Second {
    Token(TokenEntry),
    Quantity(QuantityEntry),
    Date(DateRange),
    String(StringEntry),
}

/// Every index entry of one resource.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Entries {
    pub strings: Vec<StringEntry>,
    pub tokens: Vec<TokenEntry>,
    pub references: Vec<ReferenceEntry>,
    pub dates: Vec<DateEntry>,
    pub numbers: Vec<NumberEntry>,
    pub quantities: Vec<QuantityEntry>,
    pub uris: Vec<UriEntry>,
    pub composites: Vec<CompositeEntry>,
    /// The words `_text` and `_content` find (not counted by `len`: no parameter's values).
    pub text: super::text::TextEntry,
    /// The entries of each resource it contains (`contained`), indexed apart.
    pub contained: Vec<super::contained::ContainedEntries>,
}

/// Lower case without accents: "Müller" and "muller" search alike.
pub fn normalize(text: &str) -> String {
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The index entries of `resource` for every search parameter of its type, with its words
/// and what it contains; its local references (`#x`) point at what it contains.
pub fn index(resource: &Value) -> Entries {
    let mut entries = own_entries(resource);
    super::contained::resolve_own(&mut entries.references, resource);
    entries.text = super::text::entry(resource);
    entries.contained = super::contained::index_contained(resource);
    entries
}

/// The entries of `resource`'s own parameters, local references (`url` `#x`) left as they are.
pub(super) fn own_entries(resource: &Value) -> Entries {
    let mut entries = Entries::default();
    let Some(rtype) = resource.get("resourceType").and_then(Value::as_str) else {
        return entries;
    };
    for param in SearchParams::get().of_type(rtype) {
        if is_stored_elsewhere(&param.code) || is_golden_link(rtype, &param.code, resource) {
            continue;
        }
        let found = evaluate(&param.expression, resource);
        entries.add(param, &found, resource);
    }
    entries.dedup();
    entries
}

/// The reference entries of `resource` for the parameters `codes` of its type only: what a
/// compartment test needs, without evaluating every other parameter of the type.
pub fn references_of(resource: &Value, codes: &[String]) -> Vec<ReferenceEntry> {
    let mut entries = Entries::default();
    let Some(rtype) = resource.get("resourceType").and_then(Value::as_str) else {
        return Vec::new();
    };
    for param in codes
        .iter()
        .filter_map(|c| SearchParams::get().find(rtype, c))
    {
        if param.kind == ParamType::Reference && !is_golden_link(rtype, &param.code, resource) {
            entries.add(param, &evaluate(&param.expression, resource), resource);
        }
    }
    super::contained::resolve_own(&mut entries.references, resource);
    entries.references
}

/// The index entries of `resource` for one parameter: what an in-memory match of a clause
/// (`matcher`) compares with, without evaluating the type's other parameters. `_id` and
/// `_lastUpdated` are evaluated too (the store keeps them as columns instead).
pub fn index_param(resource: &Value, param: &'static SearchParam) -> Entries {
    let mut entries = Entries::default();
    entries.add(param, &evaluate(&param.expression, resource), resource);
    super::contained::resolve_own(&mut entries.references, resource);
    entries
}

/// A golden record's `link`s (to each record of its person) are neither indexed nor a
/// compartment's: they would put it in each record's Patient compartment, where a token scoped
/// to one record could read what the person's other records say (another person's, if the
/// matcher was wrong and nobody has decided yet), `$everything` would return it, and an HL7v2
/// merge would rewrite it as the sender's record. The MPI finds a record's golden record in
/// its own tables.
fn is_golden_link(rtype: &str, code: &str, resource: &Value) -> bool {
    rtype == "Patient" && code == "link" && crate::fhir::resource::is_golden_record(resource)
}

/// `_id` and `_lastUpdated` are columns of every stored resource: searches read them there
/// instead of from index rows.
pub fn is_stored_elsewhere(code: &str) -> bool {
    code == "_id" || code == "_lastUpdated"
}

impl Entries {
    /// The entries of `param` for the items `found` in `root`.
    fn add(&mut self, param: &'static SearchParam, found: &[Out], root: &Value) {
        let p = param.code.as_str();
        for out in found {
            let item = match out {
                Out::Item(i) => *i,
                Out::Literal(Value::Bool(b)) => {
                    self.tokens.push(token(p, None, Some(b.to_string()), None));
                    continue;
                }
                Out::Literal(_) => continue,
            };
            match param.kind {
                ParamType::String => self.strings.extend(strings(p, item)),
                ParamType::Token => self.tokens.extend(tokens(p, item)),
                ParamType::Reference => self.references.extend(reference(p, item)),
                ParamType::Date => self.dates.extend(date(p, item)),
                ParamType::Number => self.numbers.extend(number(p, item)),
                ParamType::Quantity => self.quantities.extend(quantity(p, item)),
                ParamType::Uri => self.uris.extend(uri(p, item)),
                ParamType::Composite => self.composites.extend(composite(param, item, root)),
                ParamType::Special => {}
            }
        }
    }

    fn dedup(&mut self) {
        // A few entries are compared pairwise; many (a ConceptMap's 10,000 source codes) by
        // their printed form in a set, in linear time (the entries hold floats: no Hash).
        fn dedup_vec<T: PartialEq + std::fmt::Debug>(v: &mut Vec<T>) {
            if v.len() > 32 {
                let mut seen = std::collections::HashSet::with_capacity(v.len());
                v.retain(|x| seen.insert(format!("{x:?}")));
                return;
            }
            let mut seen: Vec<T> = Vec::with_capacity(v.len());
            for x in v.drain(..) {
                if !seen.contains(&x) {
                    seen.push(x);
                }
            }
            *v = seen;
        }
        dedup_vec(&mut self.strings);
        dedup_vec(&mut self.tokens);
        dedup_vec(&mut self.references);
        dedup_vec(&mut self.dates);
        dedup_vec(&mut self.numbers);
        dedup_vec(&mut self.quantities);
        dedup_vec(&mut self.uris);
        dedup_vec(&mut self.composites);
    }

    /// How many rows these entries make.
    pub fn len(&self) -> usize {
        self.strings.len()
            + self.tokens.len()
            + self.references.len()
            + self.dates.len()
            + self.numbers.len()
            + self.quantities.len()
            + self.uris.len()
            + self.composites.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn text_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn texts<'v>(v: &'v Value, key: &str) -> Vec<&'v str> {
    match v.get(key) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

fn string_entry(param: &'static str, s: &str) -> StringEntry {
    StringEntry {
        param,
        norm: normalize(s),
        exact: s.to_string(),
    }
}

fn strings(param: &'static str, item: Item) -> Vec<StringEntry> {
    let Some(v) = item.value else { return vec![] };
    let parts: Vec<&str> = match (item.ty, v) {
        (_, Value::String(s)) => vec![s.as_str()],
        ("HumanName", _) => ["text", "family", "given", "prefix", "suffix"]
            .iter()
            .flat_map(|k| texts(v, k))
            .collect(),
        ("Address", _) => [
            "text",
            "line",
            "city",
            "district",
            "state",
            "postalCode",
            "country",
        ]
        .iter()
        .flat_map(|k| texts(v, k))
        .collect(),
        _ => vec![],
    };
    parts.into_iter().map(|s| string_entry(param, s)).collect()
}

fn token(
    param: &'static str,
    system: Option<&str>,
    code: Option<String>,
    text: Option<&str>,
) -> TokenEntry {
    TokenEntry {
        param,
        system: system.map(str::to_string),
        code,
        text: text.map(normalize),
    }
}

fn coding(param: &'static str, c: &Value) -> Option<TokenEntry> {
    let code = text_of(c, "code");
    let display = text_of(c, "display");
    (code.is_some() || display.is_some()).then(|| {
        token(
            param,
            text_of(c, "system"),
            code.map(str::to_string),
            display,
        )
    })
}

/// The one system of a required value set, which a bare `code` element implies
/// (`gender=http://hl7.org/fhir/administrative-gender|male` matches `"gender": "male"`).
fn implied_system(binding: Option<&str>) -> Option<&'static str> {
    let systems = Definitions::get().valueset(binding?)?;
    match systems.len() {
        1 => systems.keys().next().map(String::as_str),
        _ => None,
    }
}

fn tokens(param: &'static str, item: Item) -> Vec<TokenEntry> {
    let Some(v) = item.value else { return vec![] };
    match (item.ty, v) {
        ("Coding", _) => coding(param, v).into_iter().collect(),
        ("CodeableConcept", _) => {
            let mut out: Vec<TokenEntry> = v
                .get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| coding(param, c))
                .collect();
            if let Some(text) = text_of(v, "text") {
                out.push(token(param, None, None, Some(text)));
            }
            out
        }
        ("Identifier", _) => {
            let mut out = Vec::new();
            let value = text_of(v, "value").map(str::to_string);
            if value.is_some() {
                let type_text = v.get("type").and_then(|t| text_of(t, "text"));
                out.push(token(param, text_of(v, "system"), value.clone(), type_text));
            }
            // `identifier:of-type=type-system|type-code|value`, kept under its own name
            for c in v
                .get("type")
                .and_then(|t| t.get("coding"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(tc), Some(val)) = (text_of(c, "code"), &value) {
                    out.push(TokenEntry {
                        param,
                        system: text_of(c, "system").map(|s| format!("of-type|{s}")),
                        code: Some(format!("{tc}|{val}")),
                        text: None,
                    });
                }
            }
            out
        }
        ("ContactPoint", _) => text_of(v, "value")
            .map(|val| token(param, text_of(v, "system"), Some(val.to_string()), None))
            .into_iter()
            .collect(),
        (_, Value::Bool(b)) => vec![token(param, None, Some(b.to_string()), None)],
        (_, Value::String(s)) => {
            let system = implied_system(item.binding);
            vec![token(param, system, Some(s.clone()), None)]
        }
        _ => vec![],
    }
}

/// `Type/id`, `Type/id/_history/3` or an absolute URL ending in `Type/id`.
fn split_reference(r: &str) -> Option<(String, String)> {
    let defs = Definitions::get();
    let mut parts: Vec<&str> = r.split('/').collect();
    if parts.len() >= 4 && parts[parts.len() - 2] == "_history" {
        parts.truncate(parts.len() - 2);
    }
    let (id, ty) = (parts.pop()?, parts.pop()?);
    (defs.is_resource_type(ty) && !id.is_empty()).then(|| (ty.to_string(), id.to_string()))
}

fn reference(param: &'static str, item: Item) -> Vec<ReferenceEntry> {
    let Some(v) = item.value else { return vec![] };
    let url = match v {
        Value::String(s) => s.as_str(), // canonical or uri
        _ => match text_of(v, "reference") {
            Some(r) => r,
            None => return vec![],
        },
    };
    if url.starts_with('#') {
        // a contained resource: `contained::resolve_local` makes it a reference to its key
        return vec![ReferenceEntry {
            param,
            target_type: None,
            target_id: None,
            url: Some(url.to_string()),
        }];
    }
    let split = split_reference(url);
    let absolute = url.contains("://") || url.starts_with("urn:");
    let entry = ReferenceEntry {
        param,
        target_type: split.as_ref().map(|(t, _)| t.clone()),
        target_id: split.map(|(_, id)| id),
        url: absolute.then(|| url.to_string()),
    };
    vec![entry]
}

fn date(param: &'static str, item: Item) -> Vec<DateEntry> {
    let Some(v) = item.value else { return vec![] };
    let range = match (item.ty, v) {
        (_, Value::String(s)) => DateRange::parse(s),
        ("Period", _) => {
            let start = text_of(v, "start").and_then(DateRange::parse);
            let end = text_of(v, "end").and_then(DateRange::parse);
            match (start, end) {
                (None, None) => None,
                (s, e) => Some(DateRange {
                    low: s.map(|r| r.low).unwrap_or(i64::MIN),
                    high: e.map(|r| r.high).unwrap_or(i64::MAX),
                }),
            }
        }
        ("Timing", _) => {
            let events = texts(v, "event")
                .into_iter()
                .filter_map(DateRange::parse)
                .fold(None, |acc, r| DateRange::span(acc, Some(r)));
            let bounds = v
                .get("repeat")
                .and_then(|r| r.get("boundsPeriod"))
                .map(|p| {
                    let start = text_of(p, "start").and_then(DateRange::parse);
                    let end = text_of(p, "end").and_then(DateRange::parse);
                    DateRange::span(start, end)
                })
                .unwrap_or(None);
            DateRange::span(events, bounds)
        }
        _ => None,
    };
    range
        .map(|range| DateEntry { param, range })
        .into_iter()
        .collect()
}

fn number(param: &'static str, item: Item) -> Vec<NumberEntry> {
    item.value
        .and_then(Value::as_f64)
        .map(|value| NumberEntry { param, value })
        .into_iter()
        .collect()
}

fn quantity(param: &'static str, item: Item) -> Vec<QuantityEntry> {
    let Some(v) = item.value else { return vec![] };
    let entry = |q: &Value, low: f64, high: f64| QuantityEntry {
        param,
        low,
        high,
        system: text_of(q, "system").map(str::to_string),
        code: text_of(q, "code")
            .or_else(|| text_of(q, "currency"))
            .map(str::to_string),
        unit: text_of(q, "unit").map(str::to_string),
    };
    if item.ty == "Range" {
        let low = v.get("low");
        let high = v.get("high");
        let unit_of = low.or(high);
        let lo = low.and_then(|l| l.get("value")).and_then(Value::as_f64);
        let hi = high.and_then(|h| h.get("value")).and_then(Value::as_f64);
        return match (unit_of, lo.or(hi)) {
            (Some(u), Some(_)) => vec![entry(
                u,
                lo.unwrap_or(f64::NEG_INFINITY),
                hi.unwrap_or(f64::INFINITY),
            )],
            _ => vec![],
        };
    }
    match v.get("value").and_then(Value::as_f64) {
        Some(x) => vec![entry(v, x, x)],
        None => vec![],
    }
}

fn uri(param: &'static str, item: Item) -> Vec<UriEntry> {
    item.value
        .and_then(Value::as_str)
        .map(|s| UriEntry {
            param,
            value: s.to_string(),
        })
        .into_iter()
        .collect()
}

/// A composite of two parts (token first), or of a token and two numbers (MolecularSequence's
/// coordinates): one entry per combination found within the same item. The one composite of
/// another shape (DocumentReference's `relationship`, a reference first) is not indexed.
fn composite(param: &'static SearchParam, item: Item, root: &Value) -> Vec<CompositeEntry> {
    let (first, second, third) = match param.components.as_slice() {
        [first, second] => (first, second, None),
        [first, second, third] if third.kind == ParamType::Number => (first, second, Some(third)),
        _ => return vec![],
    };
    if first.kind != ParamType::Token {
        return vec![];
    }
    let p = param.code.as_str();
    // a part's items: within the composite's item, or from the resource (`%resource.`)
    let items_of = |c: &super::params::Component| -> Vec<Item> {
        let found = if c.from_root {
            evaluate(&c.expression, root)
        } else {
            evaluate_on(&c.expression, item)
        };
        found
            .into_iter()
            .filter_map(|o| match o {
                Out::Item(i) => Some(i),
                _ => None,
            })
            .collect()
    };
    let firsts: Vec<TokenEntry> = items_of(first)
        .into_iter()
        .flat_map(|i| tokens(p, i))
        .filter(|t| t.code.is_some())
        .collect();
    let seconds: Vec<Second> = items_of(second)
        .into_iter()
        .flat_map(|i| match second.kind {
            ParamType::Token => tokens(p, i).into_iter().map(Second::Token).collect(),
            ParamType::Quantity => quantity(p, i).into_iter().map(Second::Quantity).collect(),
            // a number is kept as a quantity without units, its value its range
            ParamType::Number => number(p, i)
                .into_iter()
                .map(|n| {
                    Second::Quantity(QuantityEntry {
                        param: p,
                        low: n.value,
                        high: n.value,
                        system: None,
                        code: None,
                        unit: None,
                    })
                })
                .collect(),
            ParamType::Date => date(p, i)
                .into_iter()
                .map(|d| Second::Date(d.range))
                .collect(),
            ParamType::String => strings(p, i).into_iter().map(Second::String).collect(),
            _ => Vec::new(),
        })
        .collect();
    let thirds: Vec<Option<f64>> = match third {
        None => vec![None],
        Some(c) => items_of(c)
            .into_iter()
            .flat_map(|i| number(p, i))
            .map(|n| Some(n.value))
            .collect(),
    };
    let mut out = Vec::new();
    for f in &firsts {
        for s in &seconds {
            for t in &thirds {
                out.push(CompositeEntry {
                    param: p,
                    first: f.clone(),
                    second: s.clone(),
                    third: *t,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patient_is_found_by_names_identifiers_codes_and_dates() {
        let p = json!({"resourceType":"Patient","id":"p1","meta":{"lastUpdated":"2026-01-02T03:04:05.000006Z","tag":[{"system":"http://t","code":"vip"}]},
            "identifier":[{"system":"http://mrn","value":"123","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]}}],
            "name":[{"family":"Müller","given":["Zoë","Ann"]}],"gender":"female","birthDate":"1974-12",
            "address":[{"city":"Zürich","postalCode":"8000"}],"telecom":[{"system":"phone","value":"555"}],
            "generalPractitioner":[{"reference":"Practitioner/dr1"}],"managingOrganization":{"reference":"http://other/fhir/Organization/o9"},
            "deceasedBoolean":false});
        let e = index(&p);
        let strings = |param: &str| -> Vec<String> {
            e.strings
                .iter()
                .filter(|s| s.param == param)
                .map(|s| s.norm.clone())
                .collect()
        };
        assert_eq!(strings("family"), ["muller"]);
        assert_eq!(strings("given"), ["zoe", "ann"]);
        assert!(strings("name").contains(&"muller".to_string()));
        assert!(strings("address").contains(&"zurich".to_string()));
        let token = |param: &str| -> Vec<(Option<String>, Option<String>)> {
            e.tokens
                .iter()
                .filter(|t| t.param == param)
                .map(|t| (t.system.clone(), t.code.clone()))
                .collect()
        };
        assert!(token("identifier").contains(&(Some("http://mrn".into()), Some("123".into()))));
        assert!(token("identifier").contains(&(
            Some("of-type|http://terminology.hl7.org/CodeSystem/v2-0203".into()),
            Some("MR|123".into())
        )));
        assert_eq!(
            token("gender"),
            [(
                Some("http://hl7.org/fhir/administrative-gender".into()),
                Some("female".into())
            )]
        );
        assert_eq!(token("deceased"), [(None, Some("false".into()))]);
        assert_eq!(
            token("_tag"),
            [(Some("http://t".into()), Some("vip".into()))]
        );
        assert!(token("_id").is_empty(), "_id is the resource's own column");
        assert_eq!(token("phone"), [(Some("phone".into()), Some("555".into()))]);
        let birth = e.dates.iter().find(|d| d.param == "birthdate").unwrap();
        assert_eq!(birth.range, DateRange::parse("1974-12").unwrap());
        assert!(!e.dates.iter().any(|d| d.param == "_lastUpdated"));
        let gp = e
            .references
            .iter()
            .find(|r| r.param == "general-practitioner")
            .unwrap();
        assert_eq!(
            (gp.target_type.as_deref(), gp.target_id.as_deref()),
            (Some("Practitioner"), Some("dr1"))
        );
        let org = e
            .references
            .iter()
            .find(|r| r.param == "organization")
            .unwrap();
        assert_eq!(
            org.url.as_deref(),
            Some("http://other/fhir/Organization/o9")
        );
        assert_eq!(org.target_id.as_deref(), Some("o9"));
    }

    #[test]
    fn an_observation_is_found_by_subject_code_value_and_component_pairs() {
        let o = json!({"resourceType":"Observation","status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":"85354-9","display":"Blood pressure"}],"text":"BP"},
            "subject":{"reference":"Patient/p1"},"effectivePeriod":{"start":"2026-01-01T10:00:00Z"},
            "valueQuantity":{"value":5.5,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"},
            "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
                         {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]});
        let e = index(&o);
        let patient = e.references.iter().find(|r| r.param == "patient").unwrap();
        assert_eq!(patient.target_id.as_deref(), Some("p1"));
        assert!(e.references.iter().any(|r| r.param == "subject"));
        let code: Vec<&TokenEntry> = e.tokens.iter().filter(|t| t.param == "code").collect();
        assert_eq!(code[0].text.as_deref(), Some("blood pressure"));
        assert_eq!(code[1].text.as_deref(), Some("bp"));
        let q = e
            .quantities
            .iter()
            .find(|q| q.param == "value-quantity")
            .unwrap();
        assert_eq!((q.low, q.code.as_deref()), (5.5, Some("mmol/L")));
        let date = e.dates.iter().find(|d| d.param == "date").unwrap();
        assert_eq!(date.range.high, i64::MAX, "an open period runs on");
        // component pairs stay paired: 8480-6 with 120, never with 80
        let pairs: Vec<(String, f64)> = e
            .composites
            .iter()
            .filter(|c| c.param == "component-code-value-quantity")
            .map(|c| match &c.second {
                Second::Quantity(q) => (c.first.code.clone().unwrap(), q.low),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            pairs,
            [("8480-6".to_string(), 120.0), ("8462-4".to_string(), 80.0)]
        );
    }
}
