//! Plausible clinical data for the load tool: Patients with identifiers, names, addresses and
//! contacts (about 1 KB each, like an EMR's demographics), and vital-sign Observations.

use serde_json::{Value, json};

const FAMILY: &[&str] = &[
    "Smith",
    "García",
    "Nguyen",
    "Okafor",
    "Müller",
    "Kowalski",
    "Haddad",
    "Tanaka",
    "O'Brien",
    "Johansson",
    "Rossi",
    "Dubois",
    "Patel",
    "Kim",
    "Novák",
    "Silva",
];
const GIVEN: &[&str] = &[
    "Ana", "James", "Wei", "Chinedu", "Greta", "Piotr", "Layla", "Haruto", "Siobhan", "Lars",
    "Giulia", "Amélie", "Priya", "Min-jun", "Jakub", "Thiago",
];
const CITY: &[&str] = &[
    "Springfield",
    "Riverton",
    "Lakeside",
    "Hillcrest",
    "Fairview",
];

/// Vital signs as LOINC code, display, UCUM unit, typical value and spread.
const VITALS: &[(&str, &str, &str, f64, f64)] = &[
    ("8867-4", "Heart rate", "/min", 75.0, 15.0),
    ("9279-1", "Respiratory rate", "/min", 16.0, 3.0),
    ("8310-5", "Body temperature", "Cel", 36.8, 0.6),
    ("29463-7", "Body weight", "kg", 78.0, 18.0),
    ("8302-2", "Body height", "cm", 170.0, 12.0),
    ("2708-6", "Oxygen saturation", "%", 97.0, 2.0),
    (
        "2339-0",
        "Glucose [Mass/volume] in Blood",
        "mg/dL",
        100.0,
        25.0,
    ),
];

/// `n` scattered over all 64 bits (splitmix64's finaliser).
fn spread(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn pick<'a>(items: &[&'a str], n: u64) -> &'a str {
    items[(n as usize).wrapping_mul(2_654_435_761) % items.len()]
}

/// Patient `n`'s demographics as an HL7v2 sender writes them: (family, given, birth date
/// `YYYYMMDD`, house number, postal code), drawn as `patient` draws them.
pub fn v2_person(n: u64) -> (&'static str, &'static str, String, u64, String) {
    let h = spread(n);
    (
        pick(FAMILY, n),
        pick(GIVEN, h >> 8),
        format!(
            "{}{:02}{:02}",
            1930 + h % 90,
            1 + (h >> 24) % 12,
            1 + (h >> 32) % 28
        ),
        1 + (h >> 40) % 999,
        format!("6{:04}", (h >> 48) % 10_000),
    )
}

/// The family name of patient `n`.
pub fn family(n: u64) -> &'static str {
    pick(FAMILY, n)
}

/// A Patient; `id` set for an update (PUT), absent for a create.
pub fn patient(id: Option<&str>, n: u64) -> Value {
    // each attribute drawn apart from the others (as in a real population: two people rarely
    // share name, birth date and address), so that the index matches as it would in a hospital
    let h = spread(n);
    let mut p = json!({
        "resourceType": "Patient",
        "identifier": [
            {"use": "usual", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
             "system": "http://hospital.example.org/mrn", "value": format!("MRN{n:012}")},
        ],
        "active": true,
        "name": [{"use": "official", "family": pick(FAMILY, n), "given": [pick(GIVEN, h >> 8), pick(GIVEN, h >> 16)]}],
        "telecom": [{"system": "phone", "value": format!("555-{:07}", n % 10_000_000), "use": "home"}],
        "gender": if n.is_multiple_of(2) { "female" } else { "male" },
        "birthDate": format!("{}-{:02}-{:02}", 1930 + h % 90, 1 + (h >> 24) % 12, 1 + (h >> 32) % 28),
        "address": [{"use": "home", "line": [format!("{} Main St", 1 + (h >> 40) % 999)], "city": pick(CITY, n),
                      "state": "IL", "postalCode": format!("6{:04}", (h >> 48) % 10_000), "country": "US"}],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US"}]}, "preferred": true}]
    });
    if let Some(id) = id {
        p["id"] = json!(id);
        p["active"] = json!(fastrand::bool());
    }
    p
}

fn observation(subject: &str, n: u64) -> Value {
    let (code, display, unit, mean, spread) = VITALS[(n as usize) % VITALS.len()];
    let value = ((mean + (fastrand::f64() - 0.5) * 2.0 * spread) * 10.0).round() / 10.0;
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display},
        "subject": {"reference": subject},
        "effectiveDateTime": format!("2026-{:02}-{:02}T{:02}:{:02}:00Z", 1 + n % 12, 1 + n % 28, n % 24, n % 60),
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    })
}

/// A transaction of `size` entries: one new Patient and `size - 1` Observations about it,
/// linked by `urn:uuid:` references that the server must rewrite.
pub fn transaction(size: usize, n: u64) -> Value {
    let patient_url = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let mut entries = vec![json!({
        "fullUrl": patient_url,
        "resource": patient(None, n),
        "request": {"method": "POST", "url": "Patient"}
    })];
    for i in 1..size {
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            "resource": observation(&patient_url, n.wrapping_mul(131) + i as u64),
            "request": {"method": "POST", "url": "Observation"}
        }));
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// A transaction creating `size` Patients (the population that reads and updates use).
pub fn patients_transaction(size: usize, first: u64) -> Value {
    let entries: Vec<Value> = (0..size as u64)
        .map(|i| json!({"resource": patient(None, first + i), "request": {"method": "POST", "url": "Patient"}}))
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}
