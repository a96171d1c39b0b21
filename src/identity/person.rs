//! What the matcher compares of a Patient: its demographics read from the resource and
//! normalised once (upper case, diacritics and punctuation gone, phonetic keys computed), so
//! that comparing two people is cheap and every source is read the same way.

use rphonetic::DoubleMetaphone;
use serde_json::Value;
use std::sync::LazyLock;
use unicode_normalization::UnicodeNormalization;

/// The longest text kept of any one element: a name or a line longer than this is cut, so
/// that a hostile resource costs the comparisons no more than a real one.
const MAX_TEXT: usize = 64;
/// The most identifiers, names or telecoms read of one Patient.
const MAX_REPEATS: usize = 16;

static METAPHONE: LazyLock<DoubleMetaphone> = LazyLock::new(DoubleMetaphone::default);

/// A Patient's demographics, normalised. Empty text means not known. Kept in the index as
/// JSON (`index::mpi_people`), so that scoring a candidate does not read its resource.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Person {
    pub given: String,
    /// Further given names (middle names), each normalised.
    pub middle: Vec<String>,
    pub family: String,
    /// Double Metaphone primary keys of the first given and the family name.
    pub given_sound: String,
    pub family_sound: String,
    /// `YYYYMMDD` when the whole date is known; a year (`YYYY`) or `YYYYMM` when only that is.
    pub birth: String,
    /// `male`, `female`, `other`; empty for `unknown` or absent.
    pub gender: String,
    /// The house number, the rest of the first line, the city, the postal code and the state
    /// (of the first address, home before others).
    pub house: String,
    pub street: String,
    pub city: String,
    pub postal: String,
    pub state: String,
    /// The last ten digits of the first phone number.
    pub phone: String,
    pub email: String,
    /// `system|value` of each identifier with both.
    pub identifiers: Vec<String>,
    /// The Patient this record is `replaced-by` (a merge its source sent, as an HL7v2 A40
    /// does): not compared, but linked as its source says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
}

impl Person {
    /// Read the demographics of a Patient resource (any shape: missing elements are unknown).
    pub fn of(patient: &Value) -> Person {
        let name = first_name(patient);
        let given_names: Vec<String> = name
            .map(|n| strings(&n["given"]).map(normal).collect())
            .unwrap_or_default();
        let given = given_names.first().cloned().unwrap_or_default();
        let family = name
            .map(|n| normal(n["family"].as_str().unwrap_or("")))
            .unwrap_or_default();
        let address = first_address(patient);
        let (house, street) = address
            .and_then(|a| a["line"].get(0))
            .and_then(Value::as_str)
            .map(|l| house_and_street(&normal(l)))
            .unwrap_or_default();
        let field = |k: &str| {
            address
                .map(|a| normal(a[k].as_str().unwrap_or("")))
                .unwrap_or_default()
        };
        let (phone, email) = contacts(patient);
        Person {
            given_sound: sound(&given),
            family_sound: sound(&family),
            middle: given_names.into_iter().skip(1).collect(),
            given,
            family,
            birth: birth(patient["birthDate"].as_str().unwrap_or("")),
            gender: match patient["gender"].as_str() {
                Some(g @ ("male" | "female" | "other")) => g.to_string(),
                _ => String::new(),
            },
            house,
            street,
            city: field("city"),
            postal: field("postalCode").replace(' ', ""),
            state: field("state"),
            phone,
            email,
            identifiers: identifiers(patient),
            replaced_by: replaced_by(patient),
        }
    }

    /// The birth year, when known.
    pub fn birth_year(&self) -> Option<&str> {
        self.birth.get(..4)
    }
}

/// The official (else usual, else first) name.
fn first_name(patient: &Value) -> Option<&Value> {
    let names = patient["name"].as_array()?;
    let names = &names[..names.len().min(MAX_REPEATS)];
    ["official", "usual"]
        .iter()
        .find_map(|u| names.iter().find(|n| n["use"] == *u))
        .or_else(|| {
            names
                .iter()
                .find(|n| n["use"] != "old" && n["use"] != "maiden")
        })
        .or(names.first())
}

/// The home (else first current) address.
fn first_address(patient: &Value) -> Option<&Value> {
    let all = patient["address"].as_array()?;
    let all = &all[..all.len().min(MAX_REPEATS)];
    all.iter()
        .find(|a| a["use"] == "home")
        .or_else(|| all.iter().find(|a| a["use"] != "old"))
}

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array()
        .into_iter()
        .flatten()
        .take(MAX_REPEATS)
        .filter_map(Value::as_str)
}

/// Upper case ASCII letters and digits, words separated by one space: `Zoë O'Neil-Smith`
/// -> `ZOE ONEIL SMITH`.
pub fn normal(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_TEXT));
    let mut space = false;
    for c in text.nfkd().take(MAX_TEXT * 2) {
        if c.is_ascii_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c.to_ascii_uppercase());
        } else if c.is_whitespace() || c == '-' || c == ',' || c == '.' || c == '/' {
            space = true;
        }
        // other marks (accents, apostrophes) are dropped without a break
        if out.len() >= MAX_TEXT {
            break;
        }
    }
    out
}

/// The Double Metaphone primary key of a name's letters (`""` for none).
pub fn sound(name: &str) -> String {
    let letters: String = name.chars().filter(char::is_ascii_alphabetic).collect();
    if letters.is_empty() {
        return String::new();
    }
    METAPHONE.double_metaphone(&letters).primary()
}

/// `"12 STANLEY STREET"` -> (`"12"`, `"STANLEY STREET"`).
fn house_and_street(line: &str) -> (String, String) {
    match line.split_once(' ') {
        Some((first, rest)) if first.chars().any(|c| c.is_ascii_digit()) => {
            (first.to_string(), rest.to_string())
        }
        _ => (String::new(), line.to_string()),
    }
}

/// A FHIR date -> its digits (`1980-02-14` -> `19800214`, `1980` -> `1980`).
fn birth(date: &str) -> String {
    let digits: String = date.chars().filter(char::is_ascii_digit).take(8).collect();
    match digits.len() {
        4 | 6 | 8 => digits,
        _ => String::new(),
    }
}

fn contacts(patient: &Value) -> (String, String) {
    let mut phone = String::new();
    let mut email = String::new();
    for t in patient["telecom"]
        .as_array()
        .into_iter()
        .flatten()
        .take(MAX_REPEATS)
    {
        let value = t["value"].as_str().unwrap_or("");
        match t["system"].as_str() {
            Some("phone") if phone.is_empty() => {
                let digits: Vec<char> = value.chars().filter(char::is_ascii_digit).collect();
                if digits.len() >= 7 {
                    phone = digits[digits.len().saturating_sub(10)..].iter().collect();
                }
            }
            Some("email") if email.is_empty() => {
                email = value
                    .trim()
                    .to_ascii_lowercase()
                    .chars()
                    .take(MAX_TEXT)
                    .collect();
            }
            _ => {}
        }
    }
    (phone, email)
}

/// The id of the Patient a `replaced-by` link names (a local reference only).
fn replaced_by(patient: &Value) -> Option<String> {
    patient["link"]
        .as_array()?
        .iter()
        .take(MAX_REPEATS)
        .filter(|l| l["type"] == "replaced-by")
        .find_map(|l| {
            let id = l["other"]["reference"].as_str()?.strip_prefix("Patient/")?;
            crate::fhir::FhirId::parse(id).ok().map(|_| id.to_string())
        })
}

fn identifiers(patient: &Value) -> Vec<String> {
    patient["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .take(MAX_REPEATS)
        .filter_map(|i| {
            let system = i["system"].as_str()?;
            let value = i["value"].as_str()?.trim();
            (!value.is_empty() && system.len() + value.len() < 512)
                .then(|| format!("{system}|{value}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_replaced_by_another_says_which() {
        let merged = json!({"link": [
            {"type": "seealso", "other": {"reference": "Patient/x"}},
            {"type": "replaced-by", "other": {"reference": "Patient/survivor-1"}}]});
        assert_eq!(
            Person::of(&merged).replaced_by.as_deref(),
            Some("survivor-1")
        );
        for not in [
            json!({"link": [{"type": "replaces", "other": {"reference": "Patient/a"}}]}),
            json!({"link": [{"type": "replaced-by", "other": {"reference": "RelatedPerson/a"}}]}),
            json!({"link": [{"type": "replaced-by", "other": {"reference": "Patient/bad id!"}}]}),
            json!({"link": "no"}),
        ] {
            assert_eq!(Person::of(&not).replaced_by, None, "{not}");
        }
    }

    #[test]
    fn reads_and_normalises_what_the_matcher_compares() {
        let p = Person::of(&json!({
            "resourceType": "Patient",
            "name": [{"use": "old", "family": "Old"},
                     {"family": "O'Neil-Smith", "given": ["Zoë", "Anne"]}],
            "birthDate": "1980-02-14", "gender": "female",
            "address": [{"line": ["12 Stanley St."], "city": "Winston Hills", "postalCode": "42 23"}],
            "telecom": [{"system": "phone", "value": "+1 (217) 555-0101"},
                        {"system": "email", "value": " Zoe@Example.org"}],
            "identifier": [{"system": "urn:mrn", "value": "M1"}, {"value": "no system"}]
        }));
        assert_eq!(p.given, "ZOE");
        assert_eq!(p.middle, ["ANNE"]);
        assert_eq!(p.family, "ONEIL SMITH");
        assert_eq!(p.birth, "19800214");
        assert_eq!((p.house.as_str(), p.street.as_str()), ("12", "STANLEY ST"));
        assert_eq!(
            (p.city.as_str(), p.postal.as_str()),
            ("WINSTON HILLS", "4223")
        );
        assert_eq!(p.phone, "2175550101");
        assert_eq!(p.email, "zoe@example.org");
        assert_eq!(p.identifiers, ["urn:mrn|M1"]);
        assert_eq!(p.family_sound, sound("ONEILSMITH"));
        assert!(!p.given_sound.is_empty());
    }

    #[test]
    fn anything_at_all_reads_as_someone_unknown() {
        for v in [
            json!(null),
            json!([]),
            json!({"name": "x", "birthDate": 7, "address": [1]}),
        ] {
            let p = Person::of(&v);
            assert!(p.family.is_empty() && p.birth.is_empty(), "{v}");
        }
        let long = "A".repeat(100_000);
        let p = Person::of(&json!({"name": [{"family": long}]}));
        assert_eq!(p.family.len(), MAX_TEXT);
    }
}
