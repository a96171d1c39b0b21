//! Search over the spec's own R4 examples: each query's expected ids were written down by hand
//! from the example files (hl7.fhir.r4.examples 4.0.1), not from this server's answers.

use crate::corpus::example_resources;
use crate::helpers::{TestApp, link};
use crate::on_both_backends;
use serde_json::{Value, json};

/// The types loaded: enough for every parameter kind, chain, include and compartment below.
const TYPES: &[&str] = &[
    "Patient",
    "Observation",
    "Encounter",
    "Condition",
    "Practitioner",
    "Organization",
    "MedicationRequest",
    "Medication",
    "DiagnosticReport",
    "AllergyIntolerance",
    "Immunization",
    "Provenance",
    "RiskAssessment",
    "Group",
    "Location",
    "PlanDefinition",
    "ActivityDefinition",
];

/// The example resources of `TYPES`, read from the package.
fn examples() -> Vec<Value> {
    example_resources()
        .into_iter()
        .map(|(_, resource)| resource)
        .filter(|r| {
            r["resourceType"]
                .as_str()
                .is_some_and(|t| TYPES.contains(&t))
        })
        .collect()
}

/// Load the examples in one transaction (PUT each: the examples carry their ids).
async fn load(app: &TestApp) {
    let entries: Vec<Value> = examples()
        .into_iter()
        .map(|r| {
            let url = format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            );
            json!({"resource": r, "request": {"method": "PUT", "url": url}})
        })
        .collect();
    assert!(entries.len() > 250, "{} examples", entries.len());
    let r = app
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", &r.text[..r.text.len().min(2000)]);
}

fn search_ok(r: &crate::helpers::Resp, query: &str) -> Value {
    assert_eq!(r.status, 200, "{query}: {}", r.text);
    let b = r.json();
    assert_eq!(b["type"], "searchset", "{query}");
    b
}

/// `Type/id` of the entries in `mode`, in Bundle order.
fn refs(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == mode)
        // the golden records the MPI makes of the examples' people with two records are not
        // the examples' (tests/api/mpi_golden.rs is about them)
        .filter(|e| {
            !e["resource"]["meta"]["tag"]
                .to_string()
                .contains("golden-record")
        })
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect()
}

/// The ids of the matches, in result order.
async fn ordered(app: &TestApp, query: &str) -> Vec<String> {
    let b = search_ok(&app.get(&format!("{query}&_count=200")).await, query);
    refs(&b, "match")
        .into_iter()
        .map(|r| r.split_once('/').unwrap().1.to_string())
        .collect()
}

/// Check each query's matches (as a set) against the ids written down for it.
async fn expect_all(app: &TestApp, cases: &[(&str, &[&str])]) {
    let mut wrong = Vec::new();
    for (query, expected) in cases {
        let mut got = ordered(app, query).await;
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        if got != want {
            wrong.push(format!(
                "{query}\n   expected {want:?}\n   got      {got:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} queries wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

on_both_backends!(searches_over_the_r4_examples);

async fn searches_over_the_r4_examples(app: TestApp) {
    load(&app).await;
    expect_all(&app, STRINGS).await;
    expect_all(&app, TOKENS).await;
    expect_all(&app, REFERENCES).await;
    expect_all(&app, DATES).await;
    expect_all(&app, NUMBERS_URIS_COMPOSITES).await;
    expect_all(&app, CHAINS).await;
    expect_all(&app, COMPARTMENTS).await;
    sorts(&app).await;
    includes(&app).await;
    system_search(&app).await;
    result_shaping(&app).await;
}

const STRINGS: &[(&str, &[&str])] = &[
    ("Patient?family=chalmers", &["example"]),
    ("Patient?family=everywoman", &["genetics-example1", "mom"]),
    ("Patient?given=peter", &["example"]),
    (
        "Patient?name=solo",
        &["infant-mom", "infant-twin-1", "infant-twin-2"],
    ),
    (
        "Patient?family:exact=Solo",
        &["infant-mom", "infant-twin-1", "infant-twin-2"],
    ),
    ("Patient?family:exact=solo", &[]),
    ("Patient?family:contains=owel", &["pat3", "pat4"]),
    ("Patient?address-city=amsterdam", &["f001", "f201"]),
    ("Practitioner?family=van", &["f001", "f006"]),
    ("Organization?name=burgers", &["f001", "f002", "f003"]),
    ("Organization?name:contains=medisch", &["f203"]),
    ("Location?address-city=den burg", &["1"]),
    ("Immunization?lot-number=AAJN11K", &["example", "subpotent"]),
    (
        "Patient?family=chalmers,levin",
        &["example", "glossy", "xcda"],
    ),
];

const TOKENS: &[(&str, &[&str])] = &[
    (
        "Patient?gender=female",
        &[
            "animal",
            "genetics-example1",
            "infant-mom",
            "infant-twin-1",
            "mom",
            "pat4",
            "proband",
        ],
    ),
    ("Patient?gender=other", &["pat2"]),
    (
        "Patient?identifier=urn:oid:0.1.2.3.4.5.6.7|654321",
        &["pat1"],
    ),
    (
        "Patient?identifier=444222222",
        &["genetics-example1", "mom"],
    ),
    (
        "Patient?identifier=http://hl7.org/fhir/sid/us-ssn|",
        &["genetics-example1", "mom"],
    ),
    ("Patient?identifier=|AB60001", &["ihe-pcd"]),
    (
        "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345",
        &["example", "xcda"],
    ),
    (
        "Patient?gender:not=male",
        &[
            "animal",
            "genetics-example1",
            "ihe-pcd",
            "infant-mom",
            "infant-twin-1",
            "mom",
            "pat2",
            "pat4",
            "proband",
        ],
    ),
    ("Patient?gender:missing=true", &["ihe-pcd"]),
    (
        "Patient?active:missing=true",
        &[
            "infant-fetal",
            "infant-mom",
            "infant-twin-1",
            "infant-twin-2",
            "newborn",
        ],
    ),
    ("Patient?_id=pat1,pat2", &["pat1", "pat2"]),
    (
        "Observation?_profile=http://hl7.org/fhir/StructureDefinition/vitalsigns",
        &[
            "blood-pressure",
            "blood-pressure-cancel",
            "blood-pressure-dar",
            "bmi",
            "body-height",
            "body-length",
            "body-temperature",
            "head-circumference",
            "heart-rate",
            "respiratory-rate",
            "satO2",
            "vitals-panel",
        ],
    ),
    (
        "Condition?_security=http://terminology.hl7.org/CodeSystem/v3-ActCode|TBOO",
        &["f202"],
    ),
    ("Observation?code=http://loinc.org|8867-4", &["heart-rate"]),
    ("Observation?code=39156-5", &["bmi", "bmi-using-related"]),
    (
        "Observation?code=http://loinc.org|85354-9&status=final",
        &["blood-pressure", "blood-pressure-dar"],
    ),
    (
        "Observation?category=laboratory",
        &["bgpanel", "bloodgroup", "herd1", "map-sitting", "rhstatus"],
    ),
    (
        "Observation?status=cancelled,entered-in-error",
        &["blood-pressure-cancel", "f202", "unsat"],
    ),
    (
        "Observation?code:text=apgar",
        &[
            "10minute-apgar-score",
            "1minute-apgar-score",
            "20minute-apgar-score",
            "2minute-apgar-score",
            "5minute-apgar-score",
        ],
    ),
    ("Condition?clinical-status=resolved", &["f201", "f202"]),
    (
        "Condition?category=problem-list-item",
        &["example2", "f201", "f203", "f204", "family-history"],
    ),
    (
        "Condition?severity=24484000",
        &["example", "f002", "f202", "f204"],
    ),
    (
        "MedicationRequest?status=on-hold",
        &[
            "medrx0325",
            "medrx0326",
            "medrx0329",
            "medrx0334",
            "medrx0335",
        ],
    ),
    (
        "MedicationRequest?code=884308",
        &["medrx0325", "medrx0334", "medrx0335"],
    ),
    (
        "AllergyIntolerance?criticality=high",
        &["example", "medication"],
    ),
    (
        "AllergyIntolerance?category=food",
        &["example", "fishallergy"],
    ),
    ("Immunization?status=not-done", &["notGiven"]),
    ("Encounter?class=IMP", &["emerg", "example", "f203"]),
    (
        "Encounter?status=finished",
        &[
            "f001", "f002", "f003", "f201", "f202", "f203", "home", "xcda",
        ],
    ),
    ("Organization?type=prov", &["f001", "f201", "f203"]),
    ("Group?type=person", &["102", "example-patientlist"]),
    (
        "Group?actual=true",
        &["101", "102", "example-patientlist", "herd1"],
    ),
];

const REFERENCES: &[(&str, &[&str])] = &[
    (
        "Observation?subject=Patient/f001",
        &["ekg", "f001", "f002", "f003", "f004", "f005", "unsat"],
    ),
    (
        "Observation?patient=f201",
        &["f202", "f203", "f204", "f205", "f206"],
    ),
    ("Observation?subject:Group=herd1", &["herd1"]),
    (
        "Observation?performer=Practitioner/f202",
        &["f203", "f204", "f205", "f206"],
    ),
    (
        "Encounter?service-provider=Organization/f001",
        &["f001", "f002", "f003"],
    ),
    (
        "Encounter?practitioner=Practitioner/f201",
        &["f201", "f202", "f203"],
    ),
    ("Organization?partof=f001", &["f002", "f003"]),
    ("Location?partof=Location/1", &["2"]),
    ("DiagnosticReport?result=Observation/bmd", &["102"]),
    ("Group?member=Patient/pat3", &["102"]),
    ("Provenance?agent=Practitioner/xcda-author", &["example"]),
    ("Provenance?target=Procedure/example", &["example"]),
    (
        "Patient?organization=Organization/1",
        &[
            "ch-example",
            "dicom",
            "example",
            "pat1",
            "pat2",
            "pat3",
            "pat4",
        ],
    ),
    ("Patient?link=Patient/pat2", &["pat1"]),
    (
        "Patient?general-practitioner=Practitioner/example",
        &["glossy"],
    ),
    (
        "MedicationRequest?medication=Medication/med0316",
        &["medrx002"],
    ),
];

const DATES: &[(&str, &[&str])] = &[
    ("Patient?birthdate=1974-12-25", &["ch-example", "example"]),
    ("Patient?birthdate=1932", &["glossy", "xcda"]),
    (
        "Patient?birthdate=ge2017-01-01",
        &["infant-twin-1", "infant-twin-2", "newborn"],
    ),
    ("Patient?birthdate=lt1950", &["f001", "glossy", "xcda"]),
    ("Patient?birthdate=1982-01", &["pat3"]),
    ("Observation?date=1999-07-02&code=8867-4", &["heart-rate"]),
    // f001 is a period with no end: still going on, so it overlaps 2018
    (
        "Observation?date=ge2018-01-01",
        &[
            "abdo-tender",
            "bgpanel",
            "bloodgroup",
            "clinical-gender",
            "f001",
            "map-sitting",
            "rhstatus",
            "trachcare",
        ],
    ),
    ("Observation?date=2013-04-05", &["f005"]),
    (
        "Observation?date=sa2017-12-31&category=laboratory",
        &["bgpanel", "bloodgroup", "map-sitting", "rhstatus"],
    ),
    (
        "Observation?date=eb2000",
        &[
            "bmi",
            "bmi-using-related",
            "body-height",
            "body-length",
            "body-temperature",
            "head-circumference",
            "heart-rate",
            "mbp",
            "respiratory-rate",
            "vitals-panel",
        ],
    ),
    ("Encounter?date=ge2015-01-01", &["emerg", "home"]),
    ("Encounter?date=le2013-03-15", &["f203"]),
    (
        "Condition?onset-date=lt2011-12-31",
        &["f001", "f002", "stroke"],
    ),
    ("Condition?recorded-date=2013-03-11", &["f203", "f204"]),
    ("MedicationRequest?authoredon=2015-03-01", &["medrx002"]),
    ("Immunization?date=2013-01-10", &["example", "notGiven"]),
    ("Patient?_lastUpdated=lt2000-01-01", &[]),
    (
        "Patient?birthdate=ne1974-12-25",
        &[
            "animal",
            "f001",
            "f201",
            "genetics-example1",
            "glossy",
            "infant-mom",
            "infant-twin-1",
            "infant-twin-2",
            "mom",
            "newborn",
            "pat3",
            "pat4",
            "proband",
            "xcda",
            "xds",
        ],
    ),
    // approximately: within a tenth of the distance from now (about 9 years here)
    ("Patient?birthdate=ap1932-09-24", &["glossy", "xcda"]),
];

const NUMBERS_URIS_COMPOSITES: &[(&str, &[&str])] = &[
    ("RiskAssessment?probability=gt0.01", &["cardiac"]),
    ("RiskAssessment?probability=0.02", &["cardiac"]),
    ("RiskAssessment?probability=ap0.021", &["cardiac"]),
    (
        "RiskAssessment?probability=ne0.02",
        &["genetic", "riskexample"],
    ),
    ("RiskAssessment?probability=lt0.0002", &["genetic"]),
    (
        "Observation?value-quantity=gt100",
        &["656", "example", "f204"],
    ),
    (
        "Observation?value-quantity=16.2|http://unitsofmeasure.org|kg/m2",
        &["bmi", "bmi-using-related"],
    ),
    (
        "Observation?value-quantity=lt1&category=survey",
        &["1minute-apgar-score"],
    ),
    (
        "PlanDefinition?url=http://example.org/PlanDefinition/zika-virus-intervention",
        &["zika-virus-intervention", "zika-virus-intervention-initial"],
    ),
    (
        "ActivityDefinition?url:below=http://motivemi.com/artifacts",
        &[
            "citalopramPrescription",
            "referralPrimaryCareMentalHealth",
            "referralPrimaryCareMentalHealth-initial",
        ],
    ),
    (
        "PlanDefinition?url:above=http://hl7.org/fhir/ig/opioid-cds/PlanDefinition/opioidcds-04/extra",
        &["opioidcds-04"],
    ),
    (
        "Observation?code-value-quantity=http://loinc.org|8867-4$lt50",
        &["heart-rate"],
    ),
    (
        "Observation?component-code-value-quantity=http://loinc.org|8480-6$gt100",
        &["blood-pressure", "blood-pressure-dar"],
    ),
];

const CHAINS: &[(&str, &[&str])] = &[
    (
        "Observation?subject:Patient.name=chalmers&code=8867-4",
        &["heart-rate"],
    ),
    (
        "Observation?subject.family=Bor",
        &["f202", "f203", "f204", "f205", "f206"],
    ),
    (
        "Encounter?patient.organization.name=burgers",
        &["f001", "f002", "f003"],
    ),
    ("DiagnosticReport?result.code=24701-5", &["102"]),
    (
        "MedicationRequest?requester:Practitioner.family=heps&status=on-hold",
        &[
            "medrx0325",
            "medrx0326",
            "medrx0329",
            "medrx0334",
            "medrx0335",
        ],
    ),
    (
        "Observation?performer:Practitioner.gender=female",
        &[
            "ekg",
            "f001",
            "f002",
            "f003",
            "f004",
            "f005",
            "unsat",
            "vp-oyster",
        ],
    ),
    (
        "Patient?_has:Observation:patient:code=39156-5",
        &["example"],
    ),
    (
        "Patient?_has:Condition:subject:clinical-status=resolved",
        &["f201"],
    ),
    (
        "Practitioner?_has:Encounter:practitioner:status=finished",
        &["example", "f001", "f002", "f003", "f201", "xcda1"],
    ),
    (
        "Patient?_has:Observation:subject:_has:DiagnosticReport:result:status=final",
        &["pat2"],
    ),
    (
        "Organization?_has:Patient:organization:gender=female",
        &["1", "hl7"],
    ),
];

const COMPARTMENTS: &[(&str, &[&str])] = &[
    (
        "Patient/f001/Observation?",
        &["ekg", "f001", "f002", "f003", "f004", "f005", "unsat"],
    ),
    (
        "Patient/f201/Condition?clinical-status=active",
        &["f203", "f205"],
    ),
    ("Patient/example/Encounter?", &["emerg", "example", "home"]),
    ("Patient/pat1/Patient?", &["pat1", "pat2"]),
];

async fn sorts(app: &TestApp) {
    assert_eq!(
        ordered(app, "Patient?family=solo,everywoman&_sort=birthdate").await,
        [
            "genetics-example1",
            "mom",
            "infant-mom",
            "infant-twin-1",
            "infant-twin-2"
        ]
    );
    assert_eq!(
        ordered(app, "Patient?family=solo,everywoman&_sort=-birthdate").await,
        [
            "infant-twin-1",
            "infant-twin-2",
            "infant-mom",
            "genetics-example1",
            "mom"
        ]
    );
    // descending by date means by the end of each period: an open period comes first
    assert_eq!(
        ordered(app, "Observation?patient=f001&_sort=-date").await,
        ["f001", "ekg", "f002", "f003", "f004", "f005", "unsat"]
    );
    // resources without a value come last
    assert_eq!(
        ordered(app, "Practitioner?address-city=den&_sort=family").await,
        [
            "f201", "f007", "f202", "f006", "f001", "f002", "f203", "f204"
        ]
    );
    assert_eq!(
        ordered(app, "RiskAssessment?_sort=-probability").await,
        [
            "cardiac",
            "genetic",
            "riskexample",
            "breastcancer-risk",
            "population",
            "prognosis"
        ]
    );
    assert_eq!(
        ordered(app, "Encounter?status=finished&_sort=-class,_id").await,
        [
            "f203", "home", "f001", "f002", "f003", "f201", "f202", "xcda"
        ],
        "IMP, then AMB, then HH (descending), each by id"
    );

    // pages read in the date index's order (while they fill) and the general plan (the tail,
    // where Observations without a date come) together give the same order as one big page
    for query in [
        "Observation?_sort=-date",
        "Observation?_sort=date,-_id",
        "RiskAssessment?_sort=probability",
    ] {
        let whole = ordered(app, query).await;
        let mut paged = Vec::new();
        let first = format!("{query}&_count=3");
        let mut page = search_ok(&app.get(&first).await, &first);
        loop {
            paged.extend(
                refs(&page, "match")
                    .into_iter()
                    .map(|r| r.split_once('/').unwrap().1.to_string()),
            );
            match link(&page, "next") {
                Some(next) => page = search_ok(&app.get_url(&next).await, &next),
                None => break,
            }
        }
        assert_eq!(paged, whole, "{query}");
    }

    // walk a sorted result forwards then backwards, two at a time
    let query = "Patient?gender=female&_sort=birthdate&_count=2";
    let expected = [
        "proband",
        "genetics-example1",
        "mom",
        "pat4",
        "infant-mom",
        "animal",
        "infant-twin-1",
    ];
    let mut page = search_ok(&app.get(query).await, query);
    let mut forward = Vec::new();
    let mut pages = vec![];
    loop {
        let ids: Vec<String> = refs(&page, "match")
            .iter()
            .map(|r| r.split_once('/').unwrap().1.to_string())
            .collect();
        forward.extend(ids.clone());
        pages.push(ids);
        match link(&page, "next") {
            Some(next) => page = search_ok(&app.get_url(&next).await, &next),
            None => break,
        }
    }
    assert_eq!(
        forward,
        expected.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    let mut backward = vec![refs(&page, "match")];
    while let Some(prev) = link(&page, "previous") {
        page = search_ok(&app.get_url(&prev).await, &prev);
        backward.push(refs(&page, "match"));
    }
    let backward: Vec<Vec<String>> = backward
        .into_iter()
        .rev()
        .map(|p| {
            p.iter()
                .map(|r| r.split_once('/').unwrap().1.to_string())
                .collect()
        })
        .collect();
    assert_eq!(backward, pages, "previous links retrace the same pages");
}

async fn includes(app: &TestApp) {
    let get = |q: &'static str| async move { search_ok(&app.get(q).await, q) };
    let b = get("Encounter?_id=f001&_include=Encounter:subject").await;
    assert_eq!(refs(&b, "match"), ["Encounter/f001"]);
    assert_eq!(refs(&b, "include"), ["Patient/f001"]);
    assert_eq!(b["total"], 1, "included resources do not count");

    let mut all = refs(
        &get("Encounter?_id=f001&_include=Encounter:*").await,
        "include",
    );
    all.sort();
    assert_eq!(
        all,
        ["Organization/f001", "Patient/f001", "Practitioner/f002"]
    );

    let b = get("Patient?_id=pat1&_revinclude=MedicationRequest:subject").await;
    assert_eq!(refs(&b, "include").len(), 40);
    assert!(
        refs(&b, "include")
            .iter()
            .all(|r| r.starts_with("MedicationRequest/"))
    );

    let b = get("MedicationRequest?_id=medrx002&_include=MedicationRequest:medication").await;
    assert_eq!(refs(&b, "include"), ["Medication/med0316"]);

    let b = get(
        "Observation?_id=f202&_include=Observation:subject&_include:iterate=Patient:organization",
    )
    .await;
    assert_eq!(refs(&b, "include"), ["Patient/f201", "Organization/f201"]);

    let b = get("Patient?_id=example&_revinclude=Encounter:subject&_revinclude:iterate=Observation:encounter").await;
    let mut inc = refs(&b, "include");
    inc.sort();
    assert_eq!(
        inc,
        [
            "Encounter/emerg",
            "Encounter/example",
            "Encounter/home",
            "Observation/abdo-tender",
            "Observation/clinical-gender",
            "Observation/example",
            "Observation/map-sitting"
        ]
    );
    // an include of a parameter that is not a reference is refused
    assert_eq!(app.get("Patient?_include=Patient:name").await.status, 400);
    assert_eq!(
        app.get("Patient?_include=Patient:organization:Practitioner")
            .await
            .status,
        400
    );
}

async fn system_search(app: &TestApp) {
    let q = "?_type=Patient,Practitioner&family=van";
    let mut got = refs(&search_ok(&app.get(q).await, q), "match");
    got.sort();
    assert_eq!(
        got,
        ["Patient/f001", "Practitioner/f001", "Practitioner/f006"]
    );
    let q = "?_type=Patient,Encounter,Organization&_id=f201";
    let mut got = refs(&search_ok(&app.get(q).await, q), "match");
    got.sort();
    assert_eq!(got, ["Encounter/f201", "Organization/f201", "Patient/f201"]);
    let q = "?_id=f201";
    assert_eq!(
        search_ok(&app.get(q).await, q)["total"],
        6,
        "every type with id f201"
    );
    assert_eq!(
        app.get("?family=van").await.status,
        400,
        "not a parameter of every type"
    );
}

/// The golden records the MPI makes of the examples' people with two records left out.
const NOT_GOLDEN: &str = "_tag:not=http://emrsync.org/fhir/CodeSystem/mpi|golden-record";

async fn result_shaping(app: &TestApp) {
    let q = "Patient?_id=example&_summary=true";
    let p = &search_ok(&app.get(q).await, q)["entry"][0]["resource"];
    assert!(p.get("name").is_some() && p.get("contact").is_none() && p.get("text").is_none());
    assert!(
        p["meta"]["tag"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["code"] == "SUBSETTED")
    );

    // (the golden record the MPI makes of two of the examples' records of one woman left out)
    let q = &format!("Patient?gender=female&{NOT_GOLDEN}&_summary=count");
    let b = search_ok(&app.get(q).await, q);
    assert_eq!(b["total"], 7);
    assert!(b.get("entry").is_none());

    let q = "Patient?_id=example&_elements=birthDate";
    let p = &search_ok(&app.get(q).await, q)["entry"][0]["resource"];
    assert_eq!(p["birthDate"], "1974-12-25");
    assert!(p.get("name").is_none() && p.get("gender").is_none());

    let q = "Patient?gender=female&_total=none";
    assert!(search_ok(&app.get(q).await, q).get("total").is_none());
    let q = &format!("Patient?gender=female&{NOT_GOLDEN}&_count=0");
    let b = search_ok(&app.get(q).await, q);
    assert_eq!(b["total"], 7);
    assert!(b.get("entry").is_none());
}
