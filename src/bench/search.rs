//! The search benchmark: a generated data set (Patients, each with Observations, Encounters and
//! a Condition) loaded through transactions, then the queries payers, HIEs and apps send most,
//! each driven by concurrent clients with a different patient or code every time.

use super::Target;
use super::data;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Resources per Patient in the data set: the Patient, its Observations, 2 Encounters and a
/// Condition.
pub const OBSERVATIONS_PER_PATIENT: usize = 10;
const PATIENTS_PER_BUNDLE: usize = 7;

/// Vital signs (about 99% of Observations) and rarer lab tests (about 0.1% each).
const VITALS: &[&str] = &[
    "8867-4", "9279-1", "8310-5", "29463-7", "8302-2", "2708-6", "85354-9",
];
const RARE_LABS: &[&str] = &[
    "2339-0", "2160-0", "718-7", "6690-2", "777-3", "2951-2", "2823-3", "1742-6", "1920-8",
    "33914-3",
];
const SECOND_FAMILY: &[&str] = &[
    "Adler", "Baker", "Castro", "Diaz", "Eriksen", "Fischer", "Gomez", "Hansen", "Ivanova",
    "Jensen", "Khan", "Lopez", "Mendes", "Nakamura", "Olsen", "Park", "Quinn", "Reyes", "Sato",
    "Torres", "Usman", "Vargas", "Weber", "Xu", "Yilmaz", "Zhou", "Abbott", "Brandt", "Cohen",
    "Dahl", "Evans", "Fox", "Grant", "Hale", "Ito", "Jones", "Klein", "Lund", "Moreau", "Nolan",
    "Ortiz", "Pires", "Ruiz", "Stone", "Tran", "Ueda", "Voss", "Wolf", "Young", "Zeller", "Ames",
    "Berg", "Chen", "Dunn", "Ek", "Ford", "Gill", "Hart", "Iqbal", "Jung", "Kerr", "Lam", "Mora",
    "Ng",
];

/// The family name of patient `n`: about 1,000 distinct double-barrelled names.
pub fn family(n: usize) -> String {
    let first = data::family(n as u64);
    let second = SECOND_FAMILY[(n / 16) % SECOND_FAMILY.len()];
    format!("{first}-{second}")
}

pub fn mrn(n: usize) -> String {
    format!("MRN{n:012}")
}

/// Problems a Patient's narrative names (two each), for the full-text scenarios: one of them
/// is in about 1 in 20 narratives.
const PROBLEMS: &[&str] = &[
    "essential hypertension",
    "type 2 diabetes mellitus",
    "chronic kidney disease",
    "asthma",
    "chronic obstructive pulmonary disease",
    "atrial fibrillation",
    "heart failure",
    "osteoarthritis of the knee",
    "major depressive disorder",
    "hypothyroidism",
    "migraine",
    "gout",
    "psoriasis",
    "iron deficiency anemia",
    "obesity",
    "obstructive sleep apnea",
    "hyperlipidemia",
    "generalized anxiety disorder",
    "rheumatoid arthritis",
    "osteoporosis",
    "coronary artery disease",
    "peripheral neuropathy",
    "glaucoma",
    "benign prostatic hyperplasia",
    "chronic low back pain",
    "allergic rhinitis",
    "epilepsy",
    "ulcerative colitis",
    "Crohn's disease",
    "multiple sclerosis",
    "Parkinson's disease",
    "cataract",
    "eczema",
    "pernicious anemia",
    "sarcoidosis",
    "celiac disease",
    "lupus erythematosus",
    "tinnitus",
    "plantar fasciitis",
    "diverticulosis",
];

fn problem(n: usize, which: u64) -> &'static str {
    PROBLEMS[(mix(n as u64 ^ which) % PROBLEMS.len() as u64) as usize]
}

fn patient(n: usize) -> Value {
    let mut p = data::patient(Some(&format!("bp{n}")), n as u64);
    p["name"][0]["family"] = json!(family(n));
    p["identifier"][0]["value"] = json!(mrn(n));
    p["active"] = json!(true);
    // a narrative as EMRs generate them: who, and what they are followed for
    let given = p["name"][0]["given"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let city = p["address"][0]["city"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    p["text"] = json!({"status": "generated", "div": format!(
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p><b>{given} {}</b>, MRN {}, of {city}.</p>\
         <p>Followed for {} and {}; last seen {}.</p></div>",
        family(n), mrn(n), problem(n, 1), problem(n, 2), &moment(n as u64)[..10]
    )});
    p
}

/// A well-mixed hash of `k` (splitmix64), so that codes, dates and patients are independent of
/// each other as in real data (a multiplicative hash ties dates to `k mod 7`, hence to codes).
fn mix(k: u64) -> u64 {
    let mut z = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn code_of(k: u64) -> &'static str {
    let h = mix(k ^ 0xC0DE);
    if h.is_multiple_of(100) {
        RARE_LABS[(h / 100) as usize % RARE_LABS.len()]
    } else {
        VITALS[(h / 7) as usize % VITALS.len()]
    }
}

/// A date-time within 2021-2026, spread by `k`.
fn moment(k: u64) -> String {
    let k = mix(k);
    format!(
        "{}-{:02}-{:02}T{:02}:{:02}:00Z",
        2021 + k % 6,
        1 + (k / 7) % 12,
        1 + (k / 97) % 28,
        (k / 11) % 24,
        (k / 13) % 60
    )
}

/// One transaction: PUT each Patient (known ids, so that queries can name them), then POST
/// its Observations, Encounters and Condition.
fn bundle(first: usize, count: usize) -> Value {
    let mut entries = Vec::new();
    for n in first..first + count {
        let subject = json!({"reference": format!("Patient/bp{n}")});
        entries.push(json!({"resource": patient(n), "request": {"method": "PUT", "url": format!("Patient/bp{n}")}}));
        for e in 0..2 {
            let k = (n * 2 + e) as u64;
            entries.push(json!({"resource": {
                "resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": if e == 0 { "AMB" } else { "IMP" }},
                "subject": subject, "period": {"start": moment(k), "end": moment(k + 1)}
            }, "request": {"method": "POST", "url": "Encounter"}}));
        }
        for o in 0..OBSERVATIONS_PER_PATIENT {
            let k = (n * OBSERVATIONS_PER_PATIENT + o) as u64;
            let code = code_of(k);
            let category = if VITALS.contains(&code) {
                "vital-signs"
            } else {
                "laboratory"
            };
            entries.push(json!({"resource": {
                "resourceType": "Observation", "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": subject, "effectiveDateTime": moment(k),
                "valueQuantity": {"value": (k % 200) as f64 / 2.0, "unit": "1", "system": "http://unitsofmeasure.org", "code": "1"}
            }, "request": {"method": "POST", "url": "Observation"}}));
        }
        let condition = ["38341003", "44054006", "195967001", "13645005"][n % 4];
        entries.push(json!({"resource": {
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": condition}]},
            "subject": subject, "onsetDateTime": moment(n as u64)
        }, "request": {"method": "POST", "url": "Condition"}}));
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// Load `patients` Patients with their resources from all clients at once; prints progress
/// and the load rate.
pub async fn load(t: Arc<Target>, patients: usize) -> anyhow::Result<()> {
    let per_patient = 1 + OBSERVATIONS_PER_PATIENT + 3;
    load_bundles(t, (patients, PATIENTS_PER_BUNDLE, per_patient), bundle).await
}

/// Load `patients` Patients, `per_bundle` at a time, each transaction `bundle(first, count)`
/// with `per_patient` resources a Patient, from all clients at once; prints progress and the
/// load rate.
pub async fn load_bundles(
    t: Arc<Target>,
    (patients, per_bundle, per_patient): (usize, usize, usize),
    bundle: fn(usize, usize) -> Value,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(t.patients_from));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..t.clients {
        let (t, next) = (t.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(per_bundle, Ordering::Relaxed);
                if first >= patients {
                    return Ok::<(), anyhow::Error>(());
                }
                let count = per_bundle.min(patients - first);
                let req = t
                    .request(reqwest::Method::POST, "")
                    .body(bundle(first, count).to_string())
                    .header("content-type", "application/fhir+json");
                let (ok, resp) = t.send(req, reqwest::StatusCode::OK).await;
                anyhow::ensure!(
                    ok,
                    "loading patients {first}..: {}",
                    resp.to_string().chars().take(500).collect::<String>()
                );
                if (first / per_bundle).is_multiple_of(7000 / per_bundle) {
                    println!(
                        "  loaded {first} patients ({:.0} s)",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "loaded {patients} Patients, {} resources in all, in {secs:.0} s: {:.0} resources/s",
        patients * per_patient,
        (patients * per_patient) as f64 / secs
    );
    Ok(())
}

/// The query a search scenario sends next (a random patient, code or name each time).
pub fn query(scenario: super::Scenario, patients: usize) -> String {
    use super::Scenario::*;
    let n = fastrand::usize(..patients.max(1));
    match scenario {
        SearchFamily => format!("Patient?family={}", family(n)),
        SearchIdentifier => format!(
            "Patient?identifier=http://hospital.example.org/mrn|{}",
            mrn(n)
        ),
        SearchPatientCodeDate => format!(
            "Observation?patient=Patient/bp{n}&code=http://loinc.org|{}&date=ge2023-01-01",
            VITALS[n % VITALS.len()]
        ),
        SearchCodeSorted => format!(
            "Observation?code=http://loinc.org|{}&_sort=-date&_count=10",
            VITALS[n % VITALS.len()]
        ),
        SearchInclude => format!("Encounter?patient=Patient/bp{n}&_include=Encounter:subject"),
        SearchHas => format!(
            "Patient?_has:Observation:patient:code=http://loinc.org|{}",
            RARE_LABS[n % RARE_LABS.len()]
        ),
        SearchText => format!("Patient?_text=\"{}\"", problem(n, 1)),
        SearchContent => {
            let p = patient(n);
            format!(
                "Patient?_content={}%20{}",
                p["name"][0]["given"][0].as_str().unwrap_or_default(),
                family(n).split('-').next().unwrap_or_default()
            )
        }
        _ => unreachable!("not a search scenario"),
    }
}
