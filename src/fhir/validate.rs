//! Checks fhirbolt leaves out: unknown elements with a precise path, array/single cardinality,
//! missing required elements, the spec's regex for every primitive, real calendar dates, empty
//! strings, and the core resources' required code bindings.
//!
//! The walk is driven by `Definitions` (the spec's StructureDefinitions) over the JSON form.
//! In lenient mode unknown elements are removed and reported as warnings instead of errors.

use super::definitions::{Definitions, ElementDef};
use super::outcome::Issue;
use serde_json::{Map, Value};

/// What the validator found: `errors` reject the resource, `warnings` travel with the response.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Validate a resource in JSON form. With `lenient`, unknown elements are dropped from `resource`.
pub fn validate_resource(resource: &mut Value, lenient: bool) -> Report {
    let mut walk = Walk {
        defs: Definitions::get(),
        lenient,
        report: Report::default(),
    };
    walk.resource(resource, None);
    walk.report
}

struct Walk {
    defs: &'static Definitions,
    lenient: bool,
    report: Report,
}

impl Walk {
    fn error(&mut self, code: &'static str, path: &str, msg: String) {
        self.report.errors.push(Issue::error(code, msg).at(path));
    }

    /// A whole resource (top level, contained, or inside a Bundle entry or Parameters).
    fn resource(&mut self, value: &mut Value, path: Option<&str>) {
        let Some(obj) = value.as_object_mut() else {
            let at = path.unwrap_or("Resource").to_string();
            self.error("structure", &at, "a resource must be a JSON object".into());
            return;
        };
        let rtype = match obj.get("resourceType") {
            Some(Value::String(t)) => t.clone(),
            _ => {
                let at = path.unwrap_or("Resource").to_string();
                self.error(
                    "required",
                    &at,
                    "resourceType is missing or not a string".into(),
                );
                return;
            }
        };
        if !self.defs.is_resource_type(&rtype) {
            let at = path.unwrap_or(&rtype).to_string();
            self.error(
                "not-supported",
                &at,
                format!("unknown resource type '{rtype}'"),
            );
            return;
        }
        // Inside a container, the FHIRPath of the nested resource continues the outer one.
        let here = match path {
            Some(p) => format!("{p}.ofType({rtype})"),
            None => rtype.clone(),
        };
        self.structure(&rtype, obj, &here, true);
    }

    fn structure(&mut self, sname: &str, obj: &mut Map<String, Value>, path: &str, root: bool) {
        let Some(elements) = self.defs.structure(sname) else {
            return; // a type the package does not describe: fhirbolt still checks its shape
        };
        let keys: Vec<String> = obj.keys().cloned().collect();
        for key in keys {
            if root && key == "resourceType" {
                continue;
            }
            let (name, is_ext) = match key.strip_prefix('_') {
                Some(n) => (n, true),
                None => (key.as_str(), false),
            };
            let found = find_element(elements, name);
            let Some((def, type_name)) = found else {
                let at = format!("{path}.{key}");
                let msg = format!("unknown element '{key}' in {sname}");
                if self.lenient {
                    obj.remove(&key);
                    self.report.warnings.push(
                        Issue::warning("structure", msg + " (ignored: lenient handling)").at(at),
                    );
                } else {
                    self.error("structure", &at, msg);
                }
                continue;
            };
            let type_name = type_name.to_string();
            let binding = def.binding().map(str::to_string);
            let is_array = def.is_array();
            let elem_path = format!("{path}.{name}");
            let value = obj.get_mut(&key).expect("key listed above");
            match value {
                Value::Array(items) if is_array => {
                    if items.is_empty() {
                        self.error(
                            "structure",
                            &elem_path,
                            format!("'{key}' is an empty array"),
                        );
                    }
                    for (i, item) in items.iter_mut().enumerate() {
                        let at = format!("{elem_path}[{i}]");
                        self.item(item, &type_name, binding.as_deref(), is_ext, &at);
                    }
                }
                Value::Array(_) => {
                    self.error(
                        "structure",
                        &elem_path,
                        format!("'{key}' must be a single value, not an array"),
                    );
                }
                _ if is_array => {
                    self.error("structure", &elem_path, format!("'{key}' must be an array"));
                }
                item => self.item(item, &type_name, binding.as_deref(), is_ext, &elem_path),
            }
        }
        for (name, def) in elements {
            if def.is_required() && !has_element(obj, name, def) {
                let at = format!("{path}.{name}");
                self.error(
                    "required",
                    &at,
                    format!("{sname}.{name} is required (min 1) but missing"),
                );
            }
        }
    }

    fn item(
        &mut self,
        item: &mut Value,
        type_name: &str,
        binding: Option<&str>,
        is_ext: bool,
        path: &str,
    ) {
        if is_ext {
            // `_name`: the id and extensions of a primitive; null where the array has no extras.
            match item {
                Value::Null => {}
                Value::Object(obj) => self.structure("Element", obj, path, false),
                _ => self.error(
                    "structure",
                    path,
                    "a primitive's '_' companion must be an object".into(),
                ),
            }
            return;
        }
        if let Some(inner) = type_name.strip_prefix('#') {
            match item {
                Value::Object(obj) => self.structure(inner, obj, path, false),
                _ => self.error("structure", path, "expected a JSON object".into()),
            }
        } else if type_name == "Resource" {
            self.resource(item, Some(path));
        } else if self.defs.is_primitive(type_name) {
            self.primitive(item, type_name, binding, path);
        } else {
            match item {
                Value::Object(obj) => {
                    if let Some(vs) = binding {
                        self.coded(obj, type_name, vs, path);
                    }
                    self.structure(type_name, obj, path, false);
                }
                _ => self.error("structure", path, format!("expected a {type_name} object")),
            }
        }
    }

    fn primitive(&mut self, item: &Value, type_name: &str, binding: Option<&str>, path: &str) {
        let text = match (type_name, item) {
            (_, Value::Null) => return, // placeholder in a primitive array that has '_' extras
            ("boolean", Value::Bool(_)) => return,
            ("boolean", _) => {
                return self.error("structure", path, "expected a JSON boolean".into());
            }
            (
                "integer" | "positiveInt" | "unsignedInt" | "decimal" | "integer64",
                Value::Number(n),
            ) => n.to_string(),
            ("integer" | "positiveInt" | "unsignedInt" | "decimal" | "integer64", _) => {
                return self.error(
                    "structure",
                    path,
                    format!("{type_name} must be a JSON number"),
                );
            }
            (_, Value::String(s)) => s.clone(),
            _ => {
                return self.error(
                    "structure",
                    path,
                    format!("{type_name} must be a JSON string"),
                );
            }
        };
        if text.is_empty() {
            return self.error(
                "value",
                path,
                "empty strings are not allowed in FHIR; omit the element instead".into(),
            );
        }
        if type_name == "xhtml" {
            if !text.trim_start().starts_with("<div") {
                self.error(
                    "value",
                    path,
                    "narrative xhtml must be a <div> element".into(),
                );
            }
            return;
        }
        if let Some(rx) = self.defs.primitive_regex(type_name)
            && !rx.is_match(&text)
        {
            let shown: String = text.chars().take(80).collect();
            return self.error(
                "value",
                path,
                format!("'{shown}' is not a valid {type_name}"),
            );
        }
        if matches!(type_name, "date" | "dateTime" | "instant") && !real_calendar_date(&text) {
            return self.error(
                "value",
                path,
                format!("'{text}' is not a real calendar date"),
            );
        }
        if let (Some(vs), "code") = (binding, type_name)
            && let Some(systems) = self.defs.valueset(vs)
            && !systems.values().any(|codes| codes.contains(&text))
        {
            let msg = format!("'{text}' is not a code of the required value set {vs}");
            self.error("code-invalid", path, msg);
        }
    }

    /// Required bindings on Coding and CodeableConcept: a coding in one of the value set's
    /// systems must use one of its codes (codings in other systems are translations).
    fn coded(&mut self, obj: &Map<String, Value>, type_name: &str, vs: &str, path: &str) {
        let Some(systems) = self.defs.valueset(vs) else {
            return;
        };
        let pair = |c: &Map<String, Value>| {
            let system = c.get("system").and_then(Value::as_str)?;
            let code = c.get("code").and_then(Value::as_str)?;
            Some((system.to_string(), code.to_string()))
        };
        let pairs: Vec<(String, String)> = match type_name {
            "Coding" => pair(obj).into_iter().collect(),
            "CodeableConcept" => obj
                .get("coding")
                .and_then(Value::as_array)
                .map(|codings| {
                    codings
                        .iter()
                        .filter_map(|c| c.as_object().and_then(pair))
                        .collect()
                })
                .unwrap_or_default(),
            _ => return,
        };
        for (system, code) in pairs {
            if systems
                .get(&system)
                .is_some_and(|codes| !codes.contains(&code))
            {
                let msg = format!("'{system}|{code}' is not in the required value set {vs}");
                self.error("code-invalid", path, msg);
            }
        }
    }
}

/// The element definition a JSON key names, and the concrete type: `valueQuantity` finds
/// `value[x]` with type `Quantity`.
fn find_element<'a>(
    elements: &'a std::collections::HashMap<String, ElementDef>,
    key: &str,
) -> Option<(&'a ElementDef, &'a str)> {
    if let Some(def) = elements.get(key)
        && !def.is_choice()
    {
        return def.types().first().map(|t| (def, t.as_str()));
    }
    // Choice element: the longest element name that prefixes the key, then the type suffix.
    elements
        .iter()
        .filter(|(name, def)| def.is_choice() && key.starts_with(name.as_str()))
        .find_map(|(name, def)| {
            let suffix = &key[name.len()..];
            def.types()
                .iter()
                .find(|t| upper_first(t) == suffix)
                .map(|t| (def, t.as_str()))
        })
}

fn has_element(obj: &Map<String, Value>, name: &str, def: &ElementDef) -> bool {
    if def.is_choice() {
        return obj
            .keys()
            .any(|k| k.trim_start_matches('_').starts_with(name));
    }
    obj.contains_key(name) || obj.contains_key(&format!("_{name}"))
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// The regexes allow 2023-02-31; a full date must also exist on the calendar.
fn real_calendar_date(text: &str) -> bool {
    if text.len() < 10 {
        return true; // a year or year-month: the regex already checked it
    }
    chrono::NaiveDate::parse_from_str(&text[..10], "%Y-%m-%d").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(mut v: Value) -> Vec<String> {
        validate_resource(&mut v, false)
            .errors
            .into_iter()
            .map(|i| format!("{} {}", i.expression.unwrap_or_default(), i.code))
            .collect()
    }

    #[test]
    fn accepts_a_plain_patient() {
        let p = json!({"resourceType":"Patient","id":"a1","gender":"female","birthDate":"1970-01-02",
            "name":[{"family":"Chalmers","given":["Peter","James"]}],"_birthDate":{"extension":[{"url":"http://x","valueString":"y"}]}});
        assert!(errors(p).is_empty());
    }

    #[test]
    fn rejects_what_fhirbolt_lets_through() {
        let p = json!({"resourceType":"Patient","gender":"banana","birthDate":"01/02/1970","name":[{"family":""}]});
        let e = errors(p);
        assert!(
            e.contains(&"Patient.gender code-invalid".to_string()),
            "{e:?}"
        );
        assert!(e.contains(&"Patient.birthDate value".to_string()), "{e:?}");
        assert!(
            e.contains(&"Patient.name[0].family value".to_string()),
            "{e:?}"
        );
    }

    #[test]
    fn reports_unknown_elements_and_drops_them_when_lenient() {
        let mut p = json!({"resourceType":"Patient","nmae":[{"family":"X"}]});
        assert_eq!(errors(p.clone()), vec!["Patient.nmae structure"]);
        let report = validate_resource(&mut p, true);
        assert!(report.is_valid());
        assert_eq!(report.warnings.len(), 1);
        assert!(p.get("nmae").is_none());
    }

    #[test]
    fn checks_choice_types_contained_and_impossible_dates() {
        let o = json!({"resourceType":"Observation","status":"final","code":{"text":"x"},
            "valueQuantity":{"value":1.5,"unit":"mg"},"effectiveDateTime":"2023-02-30",
            "contained":[{"resourceType":"Patient","gender":"nope"}]});
        let e = errors(o);
        assert!(
            e.contains(&"Observation.effectiveDateTime value".to_string()),
            "{e:?}"
        );
        assert!(
            e.contains(&"Observation.contained[0].ofType(Patient).gender code-invalid".to_string()),
            "{e:?}"
        );
        let missing = errors(json!({"resourceType":"Observation","code":{"text":"x"}}));
        assert_eq!(missing, vec!["Observation.status required"]);
    }
}
