//! A vendor's record to a FHIR resource, by a map written as data: for each FHIR element (a
//! JSON Pointer into the resource, `/name/0/family`) where its value is in the record (a
//! JSONPath, RFC 9535: `$.last_name`), with the vendor's codes mapped to FHIR's, its dates read
//! in the vendor's format, and references to the resources the source's other record types
//! make. The vendor's id of the record becomes an identifier (the record type's system) and,
//! through `stable_id`, the resource's id: the same record arriving again lands on the same
//! resource, and another record naming it (an appointment's patient id) refers to it without
//! a search.
//!
//! A map is compiled once (every path and pointer parsed, every reference checked) so that a
//! mistake in it is said when the source is loaded, not at the first record. A record that
//! cannot be mapped is refused with the element and the JSONPath at fault; the record is then
//! the exception queue's, and the rest of its page goes on.

use crate::adapters::hl7v2::zone::Zone;
use crate::ingest::restate::Stated;
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_json_path::JsonPath;
use std::collections::{BTreeMap, HashMap};

/// One record type of a source, as its definition file writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordMap {
    /// The FHIR resource type each record becomes.
    pub resource_type: String,
    /// Where the vendor's id of the record is (JSONPath).
    pub key: String,
    /// The identifier system of the vendor's ids of this record type.
    pub identifier_system: String,
    /// The resource's elements, in order (a later one may add to an earlier one's array).
    pub elements: Vec<Element>,
}

/// How one element of the resource is filled.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Element {
    /// Where in the resource (JSON Pointer; arrays and objects on the way are made).
    pub to: String,
    /// Where in the record (JSONPath, one value); absent with `value`.
    #[serde(default)]
    pub from: Option<String>,
    /// A fixed value (a `system` beside a mapped `value`, say).
    #[serde(default)]
    pub value: Option<Value>,
    /// The vendor's codes (as text) to FHIR's values; a code not listed fails the record,
    /// unless `otherwise` gives what it becomes.
    #[serde(default)]
    pub codes: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub otherwise: Option<Value>,
    /// The vendor's date format (strftime, `%m/%d/%Y`), or a list of them tried in order:
    /// the value becomes a FHIR date.
    #[serde(default)]
    pub date: Option<Formats>,
    /// The vendor's date-time format (strftime), or a list; without an offset in it, the
    /// time is the source's local time. The value becomes a FHIR dateTime.
    #[serde(default)]
    pub date_time: Option<Formats>,
    /// The record type (of this source) whose resource the value is the vendor's id of: the
    /// element becomes a Reference to it.
    #[serde(default)]
    pub reference: Option<String>,
    /// `string`, `integer`, `decimal` or `boolean`: what a scalar becomes (vendors send
    /// numbers as text and text as numbers).
    #[serde(default, rename = "as")]
    pub kind: Option<Kind>,
    /// A record without the value is refused (else the element is left out, or `default`
    /// placed).
    #[serde(default)]
    pub required: bool,
    /// What the element is when the record has no value (a FHIR value, placed as it is).
    #[serde(default)]
    pub default: Option<Value>,
    /// The element as a whole, `"{}"` in it standing for the value (a Coding, a ContactPoint,
    /// an Identifier): placed only when the record has the value, so that no half element
    /// (a system without its code) is made.
    #[serde(default)]
    pub template: Option<Value>,
}

/// One strftime format or several, tried in order (vendors mix them).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Formats {
    One(String),
    Many(Vec<String>),
}

impl Formats {
    fn list(&self) -> &[String] {
        match self {
            Formats::One(f) => std::slice::from_ref(f),
            Formats::Many(fs) => fs,
        }
    }

    fn shown(&self) -> String {
        self.list().join(" or ")
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    String,
    Integer,
    Decimal,
    Boolean,
}

/// Why a record could not be mapped: the element, where the map looked in the record, and
/// what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The resource element (`/birthDate`), or `key`.
    pub element: String,
    /// The JSONPath in the record at fault.
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (from {}): {}", self.element, self.path, self.reason)
    }
}

/// The maps of one source's record types, compiled.
#[derive(Debug)]
pub struct Maps {
    source: String,
    records: HashMap<String, Compiled>,
}

#[derive(Debug)]
struct Compiled {
    rtype: &'static str,
    map: RecordMap,
    key: JsonPath,
    elements: Vec<(jsonptr::PointerBuf, Option<JsonPath>)>,
}

/// At most this many elements in a map, and this deep a pointer: a map is data someone wrote,
/// and a resource it makes is bounded like any other write.
const MAX_ELEMENTS: usize = 500;
const MAX_POINTER_DEPTH: usize = 12;
/// Array positions a pointer may name (`/telecom/3`): arrays are filled in order.
const MAX_INDEX: usize = 50;

impl Maps {
    /// Compile `records` (record type -> map) of source `source`: every path parsed, every
    /// reference to a record type of this source.
    pub fn compile(source: &str, records: BTreeMap<String, RecordMap>) -> Result<Maps, String> {
        let mut compiled = HashMap::new();
        for (name, map) in &records {
            let at = |what: &str, e: &dyn std::fmt::Display| {
                format!("source {source}, record type {name}: {what}: {e}")
            };
            let definitions = crate::fhir::definitions::Definitions::get();
            let rtype = definitions
                .is_resource_type(&map.resource_type)
                .then(|| definitions.type_name(&map.resource_type))
                .flatten()
                .ok_or_else(|| at("resourceType", &"not a FHIR R4 resource type"))?;
            if map.elements.len() > MAX_ELEMENTS {
                return Err(at("elements", &format!("more than {MAX_ELEMENTS}")));
            }
            let key = JsonPath::parse(&map.key).map_err(|e| at("key", &e))?;
            let mut elements = Vec::with_capacity(map.elements.len());
            for el in &map.elements {
                let to = pointer(&el.to).map_err(|e| at(&el.to, &e))?;
                let from = match &el.from {
                    Some(p) => Some(JsonPath::parse(p).map_err(|e| at(&el.to, &e))?),
                    None => None,
                };
                if from.is_none() == el.value.is_none() {
                    return Err(at(&el.to, &"give either `from` or `value`"));
                }
                let no_format =
                    |f: &Option<Formats>| f.as_ref().is_some_and(|f| f.list().is_empty());
                if no_format(&el.date) || no_format(&el.date_time) {
                    return Err(at(&el.to, &"an empty list of formats"));
                }
                if let Some(r) = &el.reference
                    && !records.contains_key(r)
                {
                    return Err(at(&el.to, &format!("no record type {r} to refer to")));
                }
                elements.push((to, from));
            }
            compiled.insert(
                name.clone(),
                Compiled {
                    rtype,
                    map: map.clone(),
                    key,
                    elements,
                },
            );
        }
        Ok(Maps {
            source: source.to_string(),
            records: compiled,
        })
    }

    pub fn record_types(&self) -> impl Iterator<Item = &str> {
        self.records.keys().map(String::as_str)
    }

    /// The vendor's id of a record of `record_type`, when it has one.
    pub fn key_of(&self, record_type: &str, record: &Value) -> Option<String> {
        let c = self.records.get(record_type)?;
        scalar_text(&c.key, record).ok().flatten()
    }

    /// The resource a record of `record_type` becomes, its id the one `cx.id_of` gives its key.
    pub fn map(
        &self,
        record_type: &str,
        record: &Value,
        cx: &Context<'_>,
    ) -> Result<Stated, Refused> {
        let c = self.records.get(record_type).ok_or_else(|| Refused {
            element: "record".into(),
            path: "$".into(),
            reason: format!("source {} has no record type {record_type}", self.source),
        })?;
        let key = scalar_text(&c.key, record).map_err(|reason| Refused {
            element: "key".into(),
            path: c.map.key.clone(),
            reason,
        })?;
        let Some(key) = key else {
            return Err(Refused {
                element: "key".into(),
                path: c.map.key.clone(),
                reason: "the record has no id there".into(),
            });
        };
        let id = (cx.id_of)(&c.map.resource_type, &c.map.identifier_system, &key);
        let mut body = Value::Object(Map::new());
        body["resourceType"] = Value::String(c.map.resource_type.clone());
        body["id"] = Value::String(id.clone());
        body["identifier"] = serde_json::json!([{
            "system": c.map.identifier_system, "value": key,
        }]);
        for (el, (to, from)) in c.map.elements.iter().zip(&c.elements) {
            let refused = |reason: String| Refused {
                element: el.to.clone(),
                path: el.from.clone().unwrap_or_else(|| "(value)".into()),
                reason,
            };
            let found = match (from, &el.value) {
                (Some(path), _) => one(path, record).map_err(refused)?.cloned(),
                (None, Some(v)) => Some(v.clone()),
                (None, None) => None,
            };
            let found = found.filter(|v| !v.is_null() && v.as_str() != Some(""));
            let Some(found) = found else {
                if el.required {
                    return Err(refused("the record has no value there".into()));
                }
                if let Some(d) = &el.default {
                    to.assign(&mut body, d.clone())
                        .map_err(|e| refused(format!("cannot be placed at {}: {e}", el.to)))?;
                }
                continue;
            };
            let mut value = self.convert(el, found, cx).map_err(refused)?;
            if let Some(t) = &el.template {
                value = filled(t, &value);
            }
            to.assign(&mut body, value)
                .map_err(|e| refused(format!("cannot be placed at {}: {e}", el.to)))?;
        }
        Ok(Stated {
            rtype: c.rtype,
            id,
            body,
        })
    }

    /// What the vendor's value becomes: code, date, reference, kind, in that order.
    fn convert(&self, el: &Element, value: Value, cx: &Context<'_>) -> Result<Value, String> {
        let mut value = value;
        if let Some(codes) = &el.codes {
            let code = text(&value).ok_or("a code must be text or a number")?;
            value = match (codes.get(&code), &el.otherwise) {
                (Some(v), _) => v.clone(),
                (None, Some(v)) => v.clone(),
                (None, None) => return Err(format!("'{code}' is not a code the map knows")),
            };
        }
        if let Some(formats) = &el.date {
            let t = text(&value).ok_or("a date must be text")?;
            let d = formats
                .list()
                .iter()
                .find_map(|f| chrono::NaiveDate::parse_from_str(t.trim(), f).ok())
                .ok_or_else(|| format!("'{t}' is not a date as {}", formats.shown()))?;
            value = Value::String(d.format("%Y-%m-%d").to_string());
        }
        if let Some(formats) = &el.date_time {
            let t = text(&value).ok_or("a date-time must be text")?;
            let found = formats
                .list()
                .iter()
                .find_map(|f| date_time(t.trim(), f, cx.zone).ok());
            value = Value::String(
                found.ok_or_else(|| format!("'{t}' is not a date-time as {}", formats.shown()))?,
            );
        }
        if let Some(record_type) = &el.reference {
            let key = text(&value).ok_or("a reference must be an id (text or a number)")?;
            let target = &self.records[record_type].map;
            let id = (cx.id_of)(&target.resource_type, &target.identifier_system, &key);
            value = serde_json::json!({"reference": format!("{}/{id}", target.resource_type)});
        }
        if let Some(kind) = el.kind {
            value = as_kind(value, kind)?;
        }
        Ok(value)
    }
}

/// What a map needs besides the record.
pub struct Context<'a> {
    /// The id of the resource of `type` whose vendor id is (`system`, `value`): the
    /// installation's stable id.
    pub id_of: &'a (dyn Fn(&str, &str, &str) -> String + Sync),
    /// The zone of the vendor's times that carry no offset.
    pub zone: Zone,
}

/// `template` with each `"{}"` in it replaced by `value`.
fn filled(template: &Value, value: &Value) -> Value {
    match template {
        Value::String(s) if s == "{}" => value.clone(),
        Value::Array(a) => Value::Array(a.iter().map(|t| filled(t, value)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, t)| (k.clone(), filled(t, value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn pointer(text: &str) -> Result<jsonptr::PointerBuf, String> {
    let p = jsonptr::PointerBuf::parse(text).map_err(|e| e.to_string())?;
    let tokens: Vec<_> = p.tokens().collect();
    if tokens.is_empty() {
        return Err("the pointer names the whole resource".into());
    }
    if tokens.len() > MAX_POINTER_DEPTH {
        return Err(format!("deeper than {MAX_POINTER_DEPTH}"));
    }
    let first = tokens[0].decoded();
    if matches!(first.as_ref(), "resourceType" | "id" | "meta") {
        return Err(format!("/{first} is the server's"));
    }
    for t in &tokens {
        if let Ok(i) = t.decoded().parse::<usize>()
            && i > MAX_INDEX
        {
            return Err(format!("array positions go up to {MAX_INDEX}"));
        }
    }
    Ok(p)
}

/// The one value `path` finds in `record` (`None`: nothing there); several is an error.
fn one<'v>(path: &JsonPath, record: &'v Value) -> Result<Option<&'v Value>, String> {
    path.query(record)
        .at_most_one()
        .map_err(|_| "the path finds several values where one is wanted".to_string())
}

fn scalar_text(path: &JsonPath, record: &Value) -> Result<Option<String>, String> {
    match one(path, record)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => text(v)
            .filter(|t| !t.trim().is_empty())
            .map(|t| Some(t.trim().to_string()))
            .ok_or_else(|| "an id must be text or a number".to_string()),
    }
}

/// A scalar as text: strings as they are, numbers and booleans written out.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn date_time(t: &str, format: &str, zone: Zone) -> Result<String, String> {
    if let Ok(at) = chrono::DateTime::parse_from_str(t, format) {
        return Ok(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    }
    let local = chrono::NaiveDateTime::parse_from_str(t, format)
        .map_err(|e| format!("'{t}' is not a date-time as {format}: {e}"))?;
    let offset = zone.offset_at(local);
    let at = chrono::TimeZone::from_local_datetime(&offset, &local)
        .single()
        .ok_or_else(|| format!("'{t}' is no single time"))?;
    Ok(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

fn as_kind(value: Value, kind: Kind) -> Result<Value, String> {
    let t = text(&value).ok_or("a scalar is wanted")?;
    let t = t.trim();
    Ok(match kind {
        Kind::String => Value::String(t.to_string()),
        Kind::Integer => Value::from(
            t.parse::<i64>()
                .map_err(|_| format!("'{t}' is not an integer"))?,
        ),
        Kind::Decimal => {
            let n: serde_json::Number = t.parse().map_err(|_| format!("'{t}' is not a decimal"))?;
            Value::Number(n)
        }
        Kind::Boolean => match t.to_ascii_lowercase().as_str() {
            "true" | "1" | "y" | "yes" => Value::Bool(true),
            "false" | "0" | "n" | "no" => Value::Bool(false),
            _ => return Err(format!("'{t}' is not a boolean")),
        },
    })
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
