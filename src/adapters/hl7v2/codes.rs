//! v2 codes to FHIR codes, as data: the v2-to-FHIR IG's concept map tables
//! (`capability/hl7v2/v2-to-fhir/codesystems/`, the IG's own CSV), with the project's choices
//! over them, each with its reason (`capability/hl7v2/code-maps.json`). A map names its table
//! as the IG does (`AdministrativeSex`, `PatientClass[EncounterClass]`).
//!
//! The tables are built into the binary, like `identifier-systems.json`: a server never starts
//! with a map that differs from the one its tests ran against.

use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::OnceLock;

/// A FHIR code a v2 code maps to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Target {
    pub code: String,
    #[serde(default)]
    pub display: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
}

impl Target {
    /// As a FHIR Coding.
    pub fn coding(&self) -> Value {
        let mut c = serde_json::Map::new();
        if let Some(s) = &self.system {
            c.insert("system".into(), json!(s));
        }
        c.insert("code".into(), json!(self.code));
        if let Some(d) = &self.display {
            c.insert("display".into(), json!(d));
        }
        Value::Object(c)
    }
}

pub(super) mod ig {
    include!(concat!(env!("OUT_DIR"), "/ig_tables.rs"));
}

/// The IG tables the HL7v2 maps use (the others are published as ConceptMaps all the same).
const IN_USE: &[&str] = &[
    "AdministrativeSex",
    "PatientClass[EncounterClass]",
    "MaritalStatus",
    "AllergenType[AllergyIntoleranceCategory]",
    "AllergySeverity[AllergyIntolerance.criticality]",
    "AllergySeverity[AllergyIntolerance.reaction.severity]",
    "ObservationResultStatusCodesInterpretation",
    "ResultStatus[Non-Queries]",
    "AdmissionType",
    "HospitalService",
    "Relationship",
    "DocumentConfidentialityStatus",
    "YesNoIndicator",
];

#[derive(Deserialize)]
pub(super) struct Overrides {
    pub maps: HashMap<String, HashMap<String, Choice>>,
}

/// The project's choices over the IG's rows (`capability/hl7v2/code-maps.json`).
pub(super) fn overrides() -> Overrides {
    serde_json::from_str(include_str!("../../../capability/hl7v2/code-maps.json"))
        .expect("capability/hl7v2/code-maps.json is valid")
}

/// The project's choice for one v2 code, over the IG's row.
#[derive(Deserialize)]
pub(super) struct Choice {
    #[serde(flatten)]
    pub target: Option<Target>,
    /// Why the project differs from the IG here.
    pub why: String,
}

type Maps = HashMap<&'static str, HashMap<String, Target>>;

/// One row of an IG table that maps a v2 code to a FHIR code.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub v2: String,
    pub v2_text: String,
    /// The v2 table as the sheet names it (`HL70001`).
    pub v2_table: String,
    pub target: Target,
}

/// One IG table's rows with both a v2 code and a FHIR code. The sheet's second row names its
/// columns: v2 code, text and table, conditions, then the FHIR code, display and system (most
/// sheets leave a blank column between code and display; a few do not).
pub(super) fn rows(csv_text: &str) -> Vec<Row> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(csv_text.as_bytes());
    let mut records = reader.records().flatten();
    let header = records.nth(1).unwrap_or_default();
    let named = |name: &str| {
        header
            .iter()
            .enumerate()
            .filter(|(_, h)| h.trim().eq_ignore_ascii_case(name))
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    let (codes, systems) = (named("Code"), named("Code System"));
    let (Some(&code_at), Some(&system_at)) = (codes.get(1), systems.get(1)) else {
        return Vec::new();
    };
    let display_at = named("Display").into_iter().find(|&i| i > code_at);
    let mut out = Vec::new();
    for record in records {
        let cell = |i: usize| record.get(i).map(str::trim).unwrap_or_default();
        let (v2, code, system) = (cell(0), cell(code_at), cell(system_at));
        // rows whose FHIR code sits in another column are the sheet's slips: not guessed at
        if v2.is_empty() || code.is_empty() || !system.starts_with("http") {
            continue;
        }
        let display = [display_at.map(cell).unwrap_or_default(), cell(code_at + 1)]
            .into_iter()
            .find(|d| !d.is_empty() && *d != system);
        out.push(Row {
            v2: v2.to_string(),
            v2_text: cell(1).to_string(),
            v2_table: cell(2).to_string(),
            target: Target {
                code: code.to_string(),
                display: display.map(str::to_string),
                system: Some(system.to_string()),
            },
        });
    }
    out
}

/// An IG table as v2 code -> its first FHIR code.
fn read(csv_text: &str) -> HashMap<String, Target> {
    let mut out = HashMap::new();
    for row in rows(csv_text) {
        out.entry(row.v2).or_insert(row.target);
    }
    out
}

fn table(name: &str) -> Option<&'static str> {
    ig::IG_TABLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

fn maps() -> &'static Maps {
    static MAPS: OnceLock<Maps> = OnceLock::new();
    MAPS.get_or_init(|| {
        let mut maps: Maps = IN_USE
            .iter()
            .map(|name| {
                let text = table(name).unwrap_or_else(|| panic!("no IG table {name}"));
                (*name, read(text))
            })
            .collect();
        for (table, choices) in overrides().maps {
            let map = maps
                .iter_mut()
                .find(|(name, _)| **name == table)
                .map(|(_, m)| m)
                .unwrap_or_else(|| panic!("code-maps.json names {table}, not an IG table in use"));
            for (v2, choice) in choices {
                match choice.target {
                    Some(t) => map.insert(v2, t),
                    None => map.remove(&v2),
                };
            }
        }
        maps
    })
}

/// The v2 code of IG table `of` that maps to the FHIR `code` (of `system`, when given): the
/// first row of the IG's sheet that does, else the project's own choice. For writing v2.
pub fn v2_code(of: &str, system: Option<&str>, code: &str) -> Option<&'static str> {
    type Reverse = HashMap<&'static str, Vec<(&'static str, &'static Target)>>;
    static REVERSE: OnceLock<Reverse> = OnceLock::new();
    let reverse = REVERSE.get_or_init(|| {
        let mut reverse: Reverse = HashMap::new();
        for name in IN_USE {
            let Some(map) = maps().get(name) else {
                continue;
            };
            let text = table(name).expect("in use tables exist");
            // the sheet's order first, then the project's additions
            let mut order: Vec<&'static str> = Vec::new();
            for row in rows(text) {
                if let Some((k, _)) = map.get_key_value(&row.v2)
                    && !order.contains(&k.as_str())
                {
                    order.push(k.as_str());
                }
            }
            let mut extra: Vec<&'static str> = map
                .keys()
                .map(String::as_str)
                .filter(|k| !order.contains(k))
                .collect();
            extra.sort_unstable();
            order.extend(extra);
            reverse.insert(name, order.into_iter().map(|k| (k, &map[k])).collect());
        }
        reverse
    });
    reverse
        .get(of)?
        .iter()
        .find(|(_, t)| t.code == code && system.is_none_or(|s| t.system.as_deref() == Some(s)))
        .map(|(v2, _)| *v2)
}

/// What v2 code `code` of IG table `table` maps to, if anything.
pub fn target(table: &str, code: &str) -> Option<&'static Target> {
    maps().get(table)?.get(code.trim())
}

/// The FHIR code (alone) that `code` maps to in `table`: for elements of type `code`.
pub fn code(table: &str, code: &str) -> Option<&'static str> {
    target(table, code).map(|t| t.code.as_str())
}

/// `cc` (a CodeableConcept made from a CWE) with the standard coding that its first code maps
/// to in `table` put first; the sender's own coding stays.
pub fn standardise(table: &str, mut cc: Value) -> Value {
    let first = cc["coding"][0]["code"].as_str().unwrap_or_default();
    if let Some(t) = target(table, first) {
        let same = |c: &Value| c["system"] == json!(t.system) && c["code"] == json!(t.code);
        if let Some(codings) = cc["coding"].as_array_mut()
            && !codings.iter().any(same)
        {
            codings.insert(0, t.coding());
        }
    }
    cc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_in_use_reads() {
        for name in IN_USE {
            assert!(
                !read(table(name).unwrap()).is_empty(),
                "{name} has no usable rows"
            );
        }
        assert_eq!(code("AdministrativeSex", "F"), Some("female"));
        assert_eq!(code("AdministrativeSex", "A"), Some("other"));
        // the sheet's own slips (a code in the display column) are not guessed at
        assert_eq!(code("ResultStatus[Non-Queries]", "F"), Some("final"));
        // the IG maps v2 U (unknown) to the null flavour, not v3 U (unmarried)
        let unknown = target("MaritalStatus", "U").unwrap();
        assert_eq!(unknown.code, "UNK");
        assert!(
            unknown
                .system
                .as_deref()
                .unwrap()
                .ends_with("v3-NullFlavor")
        );
    }

    #[test]
    fn fhir_codes_go_back_to_the_sheet_s_first_v2_code() {
        assert_eq!(v2_code("AdministrativeSex", None, "female"), Some("F"));
        assert_eq!(v2_code("AdministrativeSex", None, "other"), Some("O"));
        assert_eq!(v2_code("AdministrativeSex", None, "unknown"), Some("U"));
        assert_eq!(
            v2_code("PatientClass[EncounterClass]", None, "IMP"),
            Some("I")
        );
        assert_eq!(
            v2_code("PatientClass[EncounterClass]", None, "EMER"),
            Some("E")
        );
        assert_eq!(
            v2_code("AdministrativeSex", Some("http://x"), "female"),
            None
        );
    }

    #[test]
    fn the_project_s_choices_override_the_ig_s_rows() {
        // the IG leaves MA (miscellaneous allergy) unmapped, and so does the project
        assert_eq!(code("AllergenType[AllergyIntoleranceCategory]", "MA"), None);
        assert_eq!(code("ResultStatus[Non-Queries]", "C"), Some("corrected"));
        assert_eq!(
            code("ObservationResultStatusCodesInterpretation", "R"),
            Some("preliminary")
        );
    }
}
