//! An operation's inputs, whether a client sent them in the query string (GET) or as a
//! `Parameters` resource (POST), read one way; and the `Parameters` an operation answers with.

use serde_json::{Map, Value, json};

/// Parameters one request may carry: more is refused before any is read.
pub const MAX_PARAMETERS: usize = 1_000;

#[derive(Debug, Clone, PartialEq)]
enum Given {
    Text(String),
    Json(Value),
}

#[derive(Debug, Default, Clone)]
pub struct Params {
    given: Vec<(String, Given)>,
}

impl Params {
    /// From a query string's pairs (every value is text).
    pub fn from_query(pairs: Vec<(String, String)>) -> Result<Params, String> {
        if pairs.len() > MAX_PARAMETERS {
            return Err(format!("more than {MAX_PARAMETERS} parameters"));
        }
        Ok(Params {
            given: pairs
                .into_iter()
                .map(|(k, v)| (k, Given::Text(v)))
                .collect(),
        })
    }

    /// From a `Parameters` resource: primitive values as text, complex ones (a Coding, a
    /// CodeableConcept) and resources as JSON.
    pub fn from_resource(body: &Value) -> Result<Params, String> {
        if body["resourceType"] != "Parameters" {
            return Err("the body must be a Parameters resource".into());
        }
        let items = body["parameter"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if items.len() > MAX_PARAMETERS {
            return Err(format!("more than {MAX_PARAMETERS} parameters"));
        }
        let mut given = Vec::new();
        for p in items {
            let Some(name) = p["name"].as_str() else {
                return Err("a parameter has no name".into());
            };
            if let Some(r) = p.get("resource") {
                given.push((name.to_string(), Given::Json(r.clone())));
                continue;
            }
            let value = p
                .as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")));
            match value {
                Some((_, Value::String(s))) => {
                    given.push((name.to_string(), Given::Text(s.clone())))
                }
                Some((_, v @ (Value::Bool(_) | Value::Number(_)))) => {
                    given.push((name.to_string(), Given::Text(v.to_string())))
                }
                Some((_, v)) => given.push((name.to_string(), Given::Json(v.clone()))),
                None if p.get("part").is_some() => {
                    given.push((name.to_string(), Given::Json(p.clone())))
                }
                None => return Err(format!("the parameter {name} has no value")),
            }
        }
        Ok(Params { given })
    }

    /// The first text value of `name`.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.given.iter().find_map(|(k, v)| match v {
            Given::Text(t) if k == name => Some(t.as_str()),
            _ => None,
        })
    }

    /// Every text value of `name` (a repeated parameter).
    pub fn texts(&self, name: &str) -> Vec<&str> {
        self.given
            .iter()
            .filter_map(|(k, v)| match v {
                Given::Text(t) if k == name => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Every parameter in the order given: its name, and its value when it is text.
    pub fn all(&self) -> Vec<(&str, Option<&str>)> {
        self.given
            .iter()
            .map(|(k, v)| match v {
                Given::Text(t) => (k.as_str(), Some(t.as_str())),
                Given::Json(_) => (k.as_str(), None),
            })
            .collect()
    }

    /// The first complex value (or resource) of `name`.
    pub fn json(&self, name: &str) -> Option<&Value> {
        self.given.iter().find_map(|(k, v)| match v {
            Given::Json(j) if k == name => Some(j),
            _ => None,
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.given.iter().any(|(k, _)| k == name)
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, String> {
        match self.text(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(format!("{name}: '{other}' is not true or false")),
        }
    }

    pub fn count(&self, name: &str) -> Result<Option<usize>, String> {
        match self.text(name) {
            None => Ok(None),
            Some(t) => t
                .parse::<usize>()
                .map(Some)
                .map_err(|_| format!("{name}: '{t}' is not a whole number of zero or more")),
        }
    }
}

/// The `Parameters` an operation answers with, built in order.
#[derive(Debug, Default)]
pub struct Answer {
    parameter: Vec<Value>,
}

impl Answer {
    /// A parameter with a value of type `kind` (`valueString`'s `String`).
    pub fn value(mut self, name: &str, kind: &str, value: Value) -> Answer {
        let mut p = Map::new();
        p.insert("name".into(), json!(name));
        p.insert(format!("value{kind}"), value);
        self.parameter.push(Value::Object(p));
        self
    }

    /// The same, when there is a value.
    pub fn maybe(self, name: &str, kind: &str, value: Option<impl Into<Value>>) -> Answer {
        match value {
            Some(v) => self.value(name, kind, v.into()),
            None => self,
        }
    }

    /// A parameter made of parts (a designation, a property, a match).
    pub fn parts(mut self, name: &str, parts: Answer) -> Answer {
        self.parameter
            .push(json!({"name": name, "part": parts.parameter}));
        self
    }

    pub fn resource(mut self, name: &str, resource: Value) -> Answer {
        self.parameter
            .push(json!({"name": name, "resource": resource}));
        self
    }

    pub fn build(self) -> Value {
        json!({"resourceType": "Parameters", "parameter": self.parameter})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_and_a_parameters_resource_read_the_same() {
        let q = Params::from_query(vec![
            ("code".into(), "F".into()),
            ("property".into(), "a".into()),
            ("property".into(), "b".into()),
        ])
        .unwrap();
        let r = Params::from_resource(&json!({"resourceType": "Parameters", "parameter": [
            {"name": "code", "valueCode": "F"},
            {"name": "property", "valueCode": "a"}, {"name": "property", "valueCode": "b"},
            {"name": "coding", "valueCoding": {"system": "s", "code": "c"}},
            {"name": "count", "valueInteger": 5}]}))
        .unwrap();
        for p in [&q, &r] {
            assert_eq!(p.text("code"), Some("F"));
            assert_eq!(p.texts("property"), ["a", "b"]);
        }
        assert_eq!(r.json("coding").unwrap()["code"], "c");
        assert_eq!(r.count("count").unwrap(), Some(5));
        assert!(Params::from_resource(&json!({"resourceType": "Patient"})).is_err());
        assert!(q.bool("code").is_err());
    }
}
