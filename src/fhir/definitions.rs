//! The R4 structure facts the validator needs, derived from the spec's StructureDefinitions and
//! ValueSets by `scripts/gen-fhir-definitions.py` into `capability/fhir/definitions.json` and
//! compiled into the binary, so a server never runs with facts other than its own.

use regex::Regex;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

const DEFINITIONS_JSON: &str = include_str!("../../capability/fhir/definitions.json");

/// One element of a structure: `[types, max, required binding, is choice, min]` in the file.
#[derive(Debug, Deserialize)]
pub struct ElementDef(
    pub Vec<String>,
    pub String,
    pub Option<String>,
    pub bool,
    pub u32,
);

impl ElementDef {
    pub fn types(&self) -> &[String] {
        &self.0
    }
    pub fn is_array(&self) -> bool {
        self.1 != "1" && self.1 != "0"
    }
    pub fn binding(&self) -> Option<&str> {
        self.2.as_deref()
    }
    pub fn is_choice(&self) -> bool {
        self.3
    }
    pub fn is_required(&self) -> bool {
        self.4 > 0
    }
}

/// An element seen from FHIRPath: its type, or for a choice `value[x]` the type that a JSON key
/// suffix names (`Quantity` for `valueQuantity`).
#[derive(Debug, Clone, Copy)]
pub struct Member(&'static ElementDef);

impl Member {
    pub fn is_choice(&self) -> bool {
        self.0.is_choice()
    }

    /// The element's type; a backbone element's is its path (`Observation.component`).
    pub fn type_name(&self) -> &'static str {
        self.0
            .types()
            .first()
            .map(|t| t.trim_start_matches('#'))
            .unwrap_or("")
    }

    /// The required value set the element is bound to.
    pub fn binding(&self) -> Option<&'static str> {
        self.0.binding()
    }

    /// The type a choice element's JSON key suffix names, if it is one of the element's types.
    pub fn choice_type(&self, suffix: &str) -> Option<&'static str> {
        self.0
            .types()
            .iter()
            .find(|t| is_upper_first_of(suffix, t))
            .map(String::as_str)
    }
}

/// `suffix` is `ty` with its first letter in upper case (`Quantity`/`Quantity`, `DateTime`/`dateTime`).
pub fn is_upper_first_of(suffix: &str, ty: &str) -> bool {
    let (mut a, mut b) = (suffix.chars(), ty.chars());
    match (a.next(), b.next()) {
        (Some(x), Some(y)) => {
            x.is_uppercase() && x == y.to_ascii_uppercase() && a.as_str() == b.as_str()
        }
        _ => false,
    }
}

#[derive(Deserialize)]
struct RawDefinitions {
    primitives: HashMap<String, Option<String>>,
    resources: Vec<String>,
    aliases: HashMap<String, String>,
    types: HashMap<String, HashMap<String, ElementDef>>,
    valuesets: HashMap<String, HashMap<String, Vec<String>>>,
    summary: HashMap<String, Vec<String>>,
}

/// The loaded facts, with the spec's primitive regexes compiled and anchored.
pub struct Definitions {
    primitives: HashMap<String, Option<Regex>>,
    resources: HashSet<String>,
    aliases: HashMap<String, String>,
    types: HashMap<String, HashMap<String, ElementDef>>,
    valuesets: HashMap<String, HashMap<String, HashSet<String>>>,
    /// Top-level elements marked isSummary, per resource type (choices by their base name).
    summary: HashMap<String, HashSet<String>>,
}

impl Definitions {
    /// The process-wide definitions (parsed once, on first use).
    pub fn get() -> &'static Definitions {
        static DEFS: OnceLock<Definitions> = OnceLock::new();
        DEFS.get_or_init(|| {
            let raw: RawDefinitions = serde_json::from_str(DEFINITIONS_JSON)
                .expect("capability/fhir/definitions.json is valid (generated file)");
            Definitions::from_raw(raw)
        })
    }

    fn from_raw(raw: RawDefinitions) -> Self {
        let primitives = raw
            .primitives
            .into_iter()
            .map(|(name, rx)| {
                let compiled = rx.map(|r| {
                    Regex::new(&format!("^(?:{})$", ascii_whitespace_classes(&r)))
                        .expect("spec primitive regex compiles")
                });
                (name, compiled)
            })
            .collect();
        let valuesets = raw
            .valuesets
            .into_iter()
            .map(|(url, systems)| {
                let systems = systems
                    .into_iter()
                    .map(|(s, codes)| (s, codes.into_iter().collect()))
                    .collect();
                (url, systems)
            })
            .collect();
        Definitions {
            primitives,
            resources: raw.resources.into_iter().collect(),
            aliases: raw.aliases,
            types: raw.types,
            valuesets,
            summary: raw
                .summary
                .into_iter()
                .map(|(t, names)| (t, names.into_iter().collect()))
                .collect(),
        }
    }

    /// Whether `element` (a top-level element name, a choice by its base name) of `rtype` is
    /// part of the summary view (`_summary=true`).
    pub fn is_summary(&self, rtype: &str, element: &str) -> bool {
        self.summary
            .get(rtype)
            .is_some_and(|names| names.contains(element))
    }

    pub fn is_resource_type(&self, name: &str) -> bool {
        self.resources.contains(name)
    }

    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.resources.iter().map(String::as_str)
    }

    pub fn is_primitive(&self, type_name: &str) -> bool {
        self.primitives.contains_key(type_name)
    }

    /// The anchored regex of a primitive type (`None` for types the spec gives none, like xhtml).
    pub fn primitive_regex(&self, type_name: &str) -> Option<&Regex> {
        self.primitives.get(type_name).and_then(Option::as_ref)
    }

    /// The elements of a type or backbone path (`Patient`, `HumanName`, `Patient.contact`).
    pub fn structure(&self, name: &str) -> Option<&HashMap<String, ElementDef>> {
        let name = self.aliases.get(name).map(String::as_str).unwrap_or(name);
        self.types.get(name)
    }

    /// The interned name of a resource or data type (`None` if the spec has no such type).
    pub fn type_name(&'static self, name: &str) -> Option<&'static str> {
        self.resources
            .get(name)
            .map(String::as_str)
            .or_else(|| self.types.get_key_value(name).map(|(k, _)| k.as_str()))
            .or_else(|| self.primitives.get_key_value(name).map(|(k, _)| k.as_str()))
    }

    /// Whether the element `name` of `type_name` repeats (is a JSON array).
    pub fn is_array_member(&self, type_name: &str, name: &str) -> bool {
        self.structure(type_name)
            .and_then(|s| s.get(name))
            .is_some_and(ElementDef::is_array)
    }

    /// The element `name` of type (or backbone path) `type_name`, for FHIRPath member access.
    pub fn member(&'static self, type_name: &str, name: &str) -> Option<Member> {
        self.structure(type_name)?.get(name).map(Member)
    }

    /// The codes of a required value set by system; `None` when the set could not be expanded
    /// from the package (such bindings are not checked rather than guessed).
    pub fn valueset(&self, url: &str) -> Option<&HashMap<String, HashSet<String>>> {
        self.valuesets.get(url)
    }
}

/// The spec's regexes were written for engines where `\s` is ASCII whitespace (Java, XML
/// Schema); in Rust's Unicode mode it also matches U+00A0 and friends, which would refuse real
/// text such as "Program\u{a0}". Spell the classes out in ASCII.
fn ascii_whitespace_classes(rx: &str) -> String {
    rx.replace(r"\s", r"[\t\n\x0B\x0C\r ]")
        .replace(r"\S", r"[^\t\n\x0B\x0C\r ]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_regex_accepts_unicode_spaces_and_refuses_empty() {
        let d = Definitions::get();
        let string = d.primitive_regex("string").unwrap();
        assert!(string.is_match("Program\u{a0}"));
        assert!(string.is_match(" Seul"));
        assert!(!string.is_match(""));
        let code = d.primitive_regex("code").unwrap();
        assert!(code.is_match("in-progress"));
        assert!(!code.is_match("two  spaces"));
        assert!(!code.is_match(" lead"));
    }
}
