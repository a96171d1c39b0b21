//! Checks fhirbolt leaves out: unknown elements with a precise path, array/single cardinality,
//! missing required elements, the spec's regex for every primitive, real calendar dates, empty
//! strings, and the core resources' required code bindings.
//!
//! The walk is driven by `Definitions` (the spec's StructureDefinitions) over the JSON form.
//! In lenient mode unknown elements are removed and reported as warnings instead of errors.

use super::definitions::{Definitions, ElementDef, is_upper_first_of};
use super::nesting;
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
/// One nested deeper than `nesting::MAX_DEPTH` is refused before the (recursive) walk.
pub fn validate_resource(resource: &mut Value, lenient: bool) -> Report {
    let mut walk = Walk {
        defs: Definitions::get(),
        lenient,
        report: Report::default(),
        path: String::with_capacity(128),
    };
    match nesting::check(resource) {
        Ok(depth) => nesting::with_stack(depth, || walk.resource(resource)),
        Err(msg) => {
            let rtype = resource.get("resourceType").and_then(Value::as_str);
            walk.path.push_str(rtype.unwrap_or("Resource"));
            walk.error("structure", msg);
        }
    }
    walk.report
}

struct Walk {
    defs: &'static Definitions,
    lenient: bool,
    report: Report,
    /// The FHIRPath of the element being checked. One buffer for the whole walk, extended on
    /// the way down and cut back on the way up: paths are only copied when an issue is found.
    path: String,
}

impl Walk {
    fn error(&mut self, code: &'static str, msg: String) {
        self.report
            .errors
            .push(Issue::error(code, msg).at(self.path.clone()));
    }

    /// Run `f` with `.name` (or `[3]`, or `.ofType(X)`) appended to the current path.
    fn within<T>(&mut self, step: std::fmt::Arguments, f: impl FnOnce(&mut Self) -> T) -> T {
        use std::fmt::Write;
        let len = self.path.len();
        let _ = self.path.write_fmt(step);
        let out = f(self);
        self.path.truncate(len);
        out
    }

    /// A whole resource (top level, contained, or inside a Bundle entry or Parameters).
    fn resource(&mut self, value: &mut Value) {
        let top = self.path.is_empty();
        let Some(obj) = value.as_object_mut() else {
            if top {
                self.path.push_str("Resource");
            }
            return self.error("structure", "a resource must be a JSON object".into());
        };
        let rtype = match obj.get("resourceType") {
            Some(Value::String(t)) => t.clone(),
            _ => {
                if top {
                    self.path.push_str("Resource");
                }
                return self.error("required", "resourceType is missing or not a string".into());
            }
        };
        if !self.defs.is_resource_type(&rtype) {
            if top {
                self.path.push_str(&rtype);
            }
            return self.error("not-supported", format!("unknown resource type '{rtype}'"));
        }
        // Inside a container, the FHIRPath of the nested resource continues the outer one.
        if top {
            self.path.push_str(&rtype);
            self.structure(&rtype, obj, true);
        } else {
            self.within(format_args!(".ofType({rtype})"), |w| {
                w.structure(&rtype, obj, true)
            });
        }
    }

    fn structure(&mut self, sname: &str, obj: &mut Map<String, Value>, root: bool) {
        let Some(elements) = self.defs.structure(sname) else {
            return; // a type the package does not describe: fhirbolt still checks its shape
        };
        let mut unknown = Vec::new();
        for (key, value) in obj.iter_mut() {
            if root && key == "resourceType" {
                continue;
            }
            let (name, is_ext) = match key.strip_prefix('_') {
                Some(n) => (n, true),
                None => (key.as_str(), false),
            };
            let Some((def, type_name)) = find_element(elements, name) else {
                unknown.push(key.clone());
                continue;
            };
            let binding = def.binding();
            let is_array = def.is_array();
            self.within(format_args!(".{name}"), |w| match value {
                Value::Array(items) if is_array => {
                    if items.is_empty() {
                        w.error("structure", format!("'{key}' is an empty array"));
                    }
                    for (i, item) in items.iter_mut().enumerate() {
                        w.within(format_args!("[{i}]"), |w| {
                            w.item(item, type_name, binding, is_ext)
                        });
                    }
                }
                Value::Array(_) => w.error(
                    "structure",
                    format!("'{key}' must be a single value, not an array"),
                ),
                _ if is_array => w.error("structure", format!("'{key}' must be an array")),
                item => w.item(item, type_name, binding, is_ext),
            });
        }
        for key in unknown {
            let msg = format!("unknown element '{key}' in {sname}");
            self.within(format_args!(".{key}"), |w| {
                if w.lenient {
                    let issue = Issue::warning("structure", msg + " (ignored: lenient handling)");
                    w.report.warnings.push(issue.at(w.path.clone()));
                } else {
                    w.error("structure", msg);
                }
            });
            if self.lenient {
                obj.remove(&key);
            }
        }
        for (name, def) in elements {
            if def.is_required() && !has_element(obj, name, def) {
                self.within(format_args!(".{name}"), |w| {
                    w.error(
                        "required",
                        format!("{sname}.{name} is required (min 1) but missing"),
                    )
                });
            }
        }
    }

    fn item(&mut self, item: &mut Value, type_name: &str, binding: Option<&str>, is_ext: bool) {
        if is_ext {
            // `_name`: the id and extensions of a primitive; null where the array has no extras.
            match item {
                Value::Null => {}
                Value::Object(obj) => self.structure("Element", obj, false),
                _ => self.error(
                    "structure",
                    "a primitive's '_' companion must be an object".into(),
                ),
            }
            return;
        }
        if let Some(inner) = type_name.strip_prefix('#') {
            match item {
                Value::Object(obj) => self.structure(inner, obj, false),
                _ => self.error("structure", "expected a JSON object".into()),
            }
        } else if type_name == "Resource" {
            self.resource(item);
        } else if self.defs.is_primitive(type_name) {
            self.primitive(item, type_name, binding);
        } else {
            match item {
                Value::Object(obj) => {
                    if let Some(vs) = binding {
                        self.coded(obj, type_name, vs);
                    }
                    self.structure(type_name, obj, false);
                }
                _ => self.error("structure", format!("expected a {type_name} object")),
            }
        }
    }

    fn primitive(&mut self, item: &Value, type_name: &str, binding: Option<&str>) {
        let number;
        let text: &str = match (type_name, item) {
            (_, Value::Null) => return, // placeholder in a primitive array that has '_' extras
            ("boolean", Value::Bool(_)) => return,
            ("boolean", _) => {
                return self.error("structure", "expected a JSON boolean".into());
            }
            (
                "integer" | "positiveInt" | "unsignedInt" | "decimal" | "integer64",
                Value::Number(n),
            ) => {
                number = n.to_string();
                &number
            }
            ("integer" | "positiveInt" | "unsignedInt" | "decimal" | "integer64", _) => {
                return self.error("structure", format!("{type_name} must be a JSON number"));
            }
            (_, Value::String(s)) => s,
            _ => {
                return self.error("structure", format!("{type_name} must be a JSON string"));
            }
        };
        if text.is_empty() {
            return self.error(
                "value",
                "empty strings are not allowed in FHIR; omit the element instead".into(),
            );
        }
        if type_name == "xhtml" {
            if !text.trim_start().starts_with("<div") {
                self.error("value", "narrative xhtml must be a <div> element".into());
            }
            return;
        }
        if let Some(rx) = self.defs.primitive_regex(type_name)
            && !rx.is_match(text)
        {
            let shown: String = text.chars().take(80).collect();
            return self.error("value", format!("'{shown}' is not a valid {type_name}"));
        }
        if matches!(type_name, "date" | "dateTime" | "instant") && !real_calendar_date(text) {
            return self.error("value", format!("'{text}' is not a real calendar date"));
        }
        if let (Some(vs), "code") = (binding, type_name)
            && let Some(systems) = self.defs.valueset(vs)
            && !systems.values().any(|codes| codes.contains(text))
        {
            let msg = format!("'{text}' is not a code of the required value set {vs}");
            self.error("code-invalid", msg);
        }
    }

    /// Required bindings on Coding and CodeableConcept: a coding in one of the value set's
    /// systems must use one of its codes (codings in other systems are translations).
    fn coded(&mut self, obj: &Map<String, Value>, type_name: &str, vs: &str) {
        let Some(systems) = self.defs.valueset(vs) else {
            return;
        };
        let pair = |c: &'_ Map<String, Value>| {
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
                self.error("code-invalid", msg);
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
                .find(|t| is_upper_first_of(suffix, t))
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
