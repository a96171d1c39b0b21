//! What the provider registry compares of a Practitioner, an Organization or a PractitionerRole:
//! read from the resource once, normalised as the MPI normalises names (`person::normal`), and
//! kept as JSON in `provider_records`, so that comparing two records reads neither resource.

use crate::identity::person::{normal, sound};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The US National Provider Identifier's system: one per practitioner and per organization,
/// nationally, so two records with the same NPI are one provider and two with different NPIs
/// are not.
pub const NPI: &str = "http://hl7.org/fhir/sid/us-npi";

/// The kinds of record the registry holds.
pub const KINDS: [&str; 3] = ["Practitioner", "Organization", "PractitionerRole"];

/// The most identifiers, names or codes read of one record: a hostile one costs no more.
const MAX_REPEATS: usize = 16;
/// The longest identifier value or system compared (and kept as a blocking key): a longer one
/// is no identifier a source really assigns, and is passed over.
const MAX_IDENTIFIER: usize = 256;

/// Words of an organization's name that say its legal form, not which one it is.
const LEGAL_FORMS: [&str; 12] = [
    "THE",
    "INC",
    "INCORPORATED",
    "LLC",
    "LLP",
    "LTD",
    "CORP",
    "CORPORATION",
    "CO",
    "PC",
    "PLLC",
    "GMBH",
];

/// One record's comparable fields. Empty text means not known.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Provider {
    /// NPI values.
    pub npi: Vec<String>,
    /// `system|value` of its other identifiers.
    pub identifiers: Vec<String>,
    /// A practitioner's family name and first given name; an organization's name without
    /// its legal form (`name`).
    pub family: String,
    pub given: String,
    pub name: String,
    /// The city and postal code of the first address.
    pub city: String,
    pub postal: String,
    /// A role's practitioner and organization ids (references to this server's records).
    pub practitioner: String,
    pub organization: String,
    /// A role's codes, `system|code`.
    pub codes: Vec<String>,
}

impl Provider {
    /// The comparable fields of `resource`, a record of one of `KINDS` (`None` for others).
    pub fn of(rtype: &str, resource: &Value) -> Option<Provider> {
        if !KINDS.contains(&rtype) {
            return None;
        }
        let (npi, identifiers) = identifiers(resource);
        let mut p = Provider {
            npi,
            identifiers,
            ..Provider::default()
        };
        let address = resource["address"].get(0);
        let field = |k: &str| address.map(|a| normal(a[k].as_str().unwrap_or("")));
        p.city = field("city").unwrap_or_default();
        p.postal = field("postalCode").unwrap_or_default().replace(' ', "");
        match rtype {
            "Practitioner" => {
                let name = resource["name"].get(0);
                p.family = name
                    .map(|n| normal(n["family"].as_str().unwrap_or("")))
                    .unwrap_or_default();
                p.given = name
                    .and_then(|n| n["given"].get(0))
                    .and_then(Value::as_str)
                    .map(normal)
                    .unwrap_or_default();
            }
            "Organization" => {
                let name = normal(resource["name"].as_str().unwrap_or(""));
                p.name = name
                    .split(' ')
                    .filter(|w| !LEGAL_FORMS.contains(w))
                    .collect::<Vec<_>>()
                    .join(" ");
            }
            _ => {
                p.practitioner = local_id(&resource["practitioner"], "Practitioner");
                p.organization = local_id(&resource["organization"], "Organization");
                p.codes = resource["code"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .take(MAX_REPEATS)
                    .flat_map(|c| c["coding"].as_array().into_iter().flatten())
                    .take(MAX_REPEATS)
                    .filter_map(|c| {
                        Some(format!("{}|{}", c["system"].as_str()?, c["code"].as_str()?))
                    })
                    .collect();
                p.codes.sort();
                p.codes.dedup();
            }
        }
        Some(p)
    }

    /// The blocking keys a record of `rtype` is filed under: candidates share one.
    pub fn keys(&self, rtype: &str) -> Vec<String> {
        let mut keys: Vec<String> = self.npi.iter().map(|v| format!("npi:{v}")).collect();
        keys.extend(self.identifiers.iter().map(|i| format!("id:{i}")));
        match rtype {
            "Practitioner" if !self.family.is_empty() => {
                keys.push(format!("family:{}", sound(&self.family)))
            }
            "Organization" => {
                if let Some(first) = self.name.split(' ').next().filter(|w| !w.is_empty()) {
                    keys.push(format!("name:{}", sound(first)));
                }
            }
            "PractitionerRole" => {
                if !self.practitioner.is_empty() {
                    keys.push(format!("practitioner:{}", self.practitioner));
                }
                if !self.organization.is_empty() {
                    keys.push(format!("organization:{}", self.organization));
                }
            }
            _ => {}
        }
        keys.sort();
        keys.dedup();
        keys
    }
}

/// NPIs, and the other identifiers as `system|value`.
fn identifiers(resource: &Value) -> (Vec<String>, Vec<String>) {
    let (mut npi, mut other) = (Vec::new(), Vec::new());
    for i in resource["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .take(MAX_REPEATS)
    {
        let (Some(system), Some(value)) = (i["system"].as_str(), i["value"].as_str()) else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() || value.len() > MAX_IDENTIFIER || system.len() > MAX_IDENTIFIER {
            continue;
        }
        if system == NPI {
            npi.push(value.to_string());
        } else {
            other.push(format!("{system}|{value}"));
        }
    }
    npi.sort();
    npi.dedup();
    other.sort();
    other.dedup();
    (npi, other)
}

/// The id of a reference to this server's `rtype` (`Practitioner/abc` -> `abc`), or `""`.
fn local_id(reference: &Value, rtype: &str) -> String {
    reference["reference"]
        .as_str()
        .and_then(|r| r.strip_prefix(rtype)?.strip_prefix('/'))
        .filter(|id| !id.contains('/'))
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_kind_is_read_for_what_its_rules_compare() {
        let p = Provider::of(
            "Practitioner",
            &json!({"identifier": [{"system": NPI, "value": " 1234567893 "},
                                   {"system": "urn:lab", "value": "D7"}],
                    "name": [{"family": "O'Brien", "given": ["Mary-Ann", "K"]}]}),
        )
        .unwrap();
        assert_eq!(p.npi, ["1234567893"]);
        assert_eq!(p.identifiers, ["urn:lab|D7"]);
        let long = "9".repeat(MAX_IDENTIFIER + 1);
        let hostile = Provider::of(
            "Practitioner",
            &json!({"identifier": [{"system": NPI, "value": long}]}),
        )
        .unwrap();
        assert!(hostile.npi.is_empty() && hostile.keys("Practitioner").is_empty());
        assert_eq!(
            (p.family.as_str(), p.given.as_str()),
            ("OBRIEN", "MARY ANN")
        );
        assert!(
            p.keys("Practitioner")
                .contains(&"npi:1234567893".to_string())
        );

        let o = Provider::of(
            "Organization",
            &json!({"name": "The General Hospital, Inc."}),
        )
        .unwrap();
        assert_eq!(o.name, "GENERAL HOSPITAL");

        let r = Provider::of(
            "PractitionerRole",
            &json!({"practitioner": {"reference": "Practitioner/p1"},
                    "organization": {"reference": "https://elsewhere/Organization/o1"},
                    "code": [{"coding": [{"system": "s", "code": "doctor"}]}]}),
        )
        .unwrap();
        assert_eq!(r.practitioner, "p1");
        assert_eq!(
            r.organization, "",
            "a reference elsewhere names no record here"
        );
        assert_eq!(r.codes, ["s|doctor"]);
        assert_eq!(r.keys("PractitionerRole"), ["practitioner:p1"]);
        assert!(Provider::of("Patient", &json!({})).is_none());
    }
}
