//! Normalisation field by field, as a hospital's feeds need it: one map from the integration
//! team translates a registration system's local allergen (AL1-3) and diagnosis (DG1-3)
//! codes, a pharmacy's drug numbers (RXE-2) and a lab's local units (OBX-6); each resource
//! keeps the sender's coding and gains the standard one (a Quantity's unit becomes UCUM's
//! code, its text kept). The v2 tables themselves are translated by the v2-to-FHIR IG's maps,
//! which every server publishes as ConceptMaps.
//!
//! Then the map grows, and the resources stored before it are normalised again on request:
//! new versions, the code off the worklist.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::hl7v2::found;
use crate::mllp_client::Mllp;
use serde_json::{Value, json};

const LOCAL: &str = "http://emrsync.org/hl7v2/local-code-system/";

async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.no_shipped_terminology = false;
    })
    .await
}

fn group(local: &str, target: &str, pairs: &[(&str, &str)]) -> Value {
    json!({"source": format!("{LOCAL}{local}"), "target": target,
        "element": pairs.iter().map(|(code, to)| json!({"code": code, "target": [
            {"code": to, "equivalence": "equivalent"}]})).collect::<Vec<_>>()})
}

fn map(url: &str, groups: Vec<Value>) -> Value {
    json!({"resourceType": "ConceptMap", "url": url, "status": "active",
        "useContext": [{"code": {"system": "http://emrsync.org/fhir/CodeSystem/usage-context",
                                 "code": "normalise-on-ingest"},
                        "valueCodeableConcept": {"text": "REG@GOOD HEALTH, RX@GOOD HEALTH, LAB@GOOD HEALTH"}}],
        "group": groups})
}

fn msh(app: &str, kind: &str, control: &str) -> String {
    format!("MSH|^~\\&|{app}|GOOD HEALTH|EMRSYNC|HUB|20261125120000||{kind}|{control}|P|2.5.1\r")
}

const PID: &str = "PID|1||FLD1^^^GH&1.2.840.114350.1&ISO^MR||Fields^Frida||19800214|F\r";

fn codes_of(resource: &Value, at: &str) -> Vec<(String, String)> {
    resource[at]["coding"]
        .as_array()
        .unwrap_or_else(|| panic!("{resource}"))
        .iter()
        .map(|c| {
            (
                c["system"].as_str().unwrap_or("").to_string(),
                c["code"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn has(codes: &[(String, String)], system: &str, code: &str) -> bool {
    codes.iter().any(|(s, c)| s == system && c == code)
}

async fn each_feed_s_local_codes_gain_their_standard_ones(app: TestApp) {
    app.create(&map(
        "http://example.org/cm/gh",
        vec![
            group(
                "L",
                "http://snomed.info/sct",
                &[("PCN", "764146007"), ("PNEU", "233604007")],
            ),
            group(
                "99PHARM",
                "http://www.nlm.nih.gov/research/umls/rxnorm",
                &[("4711", "313782")],
            ),
            group("99UNIT", "http://unitsofmeasure.org", &[("MGDL", "mg/dL")]),
        ],
    ))
    .await;
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let adt = format!(
        "{}EVN|A01|20261125120000\r{PID}\
         PV1|1|I|4W^401^B^GOOD HEALTH||||||||||||||||V-FLD1^^^GH&1.2.840.114350.1&ISO^VN|||||||||||||||||||||||||20261125113000\r\
         AL1|1|DA|PCN^Penicillin^L|SV|Hives\r\
         AL1|2|FA|NUTS^Tree nuts^L|MI\r\
         DG1|1||PNEU^Pneumonia^L||20261125113000|A\r",
        msh("REG", "ADT^A01^ADT_A01", "F1")
    );
    let ack = mllp.send(&adt).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let rde = format!(
        "{}{PID}ORC|NW|RX-FLD1^CPOE\r\
         RXE|^^^20261125^^R|4711^Acetaminophen 325^99PHARM|650||mg^milligram^UCUM\r",
        msh("RX", "RDE^O11^RDE_O11", "F2")
    );
    let ack = mllp.send(&rde).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let oru = format!(
        "{}{PID}OBR|1|PL-F3^EPIC|FL-F3^LAB|24323-8^Comprehensive metabolic panel^LN|||20261125123000|||||||||||||||20261125125900|||F\r\
         OBX|1|NM|2345-7^Glucose^LN||105|MGDL^mg/dL^99UNIT|70-99|H|||F\r\
         OBX|2|NM|2951-2^Sodium^LN||140|MEQL^mEq/L^99UNIT|135-145|N|||F\r",
        msh("LAB", "ORU^R01^ORU_R01", "F3")
    );
    let ack = mllp.send(&oru).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);

    // AL1-3: the sender's code kept first, SNOMED CT's beside it
    let allergies = found(&app.get("AllergyIntolerance?patient.identifier=FLD1").await);
    let pcn = allergies
        .iter()
        .find(|a| a["code"]["coding"][0]["code"] == "PCN")
        .unwrap_or_else(|| panic!("{allergies:?}"));
    let codes = codes_of(pcn, "code");
    assert!(has(&codes, &format!("{LOCAL}L"), "PCN"), "{codes:?}");
    assert!(
        has(&codes, "http://snomed.info/sct", "764146007"),
        "{codes:?}"
    );
    // AL1-2 through the IG's table: DA is a medication allergy
    assert_eq!(pcn["category"][0], "medication");
    // DG1-3
    let conditions = found(&app.get("Condition?patient.identifier=FLD1").await);
    let codes = codes_of(&conditions[0], "code");
    assert!(
        has(&codes, "http://snomed.info/sct", "233604007"),
        "{codes:?}"
    );
    // RXE-2
    let requests = found(&app.get("MedicationRequest?patient.identifier=FLD1").await);
    let codes = codes_of(&requests[0], "medicationCodeableConcept");
    assert!(has(&codes, &format!("{LOCAL}99PHARM"), "4711"), "{codes:?}");
    assert!(
        has(
            &codes,
            "http://www.nlm.nih.gov/research/umls/rxnorm",
            "313782"
        ),
        "{codes:?}"
    );
    // and findable by the standard code
    let r = app
        .get("MedicationRequest?code=http://www.nlm.nih.gov/research/umls/rxnorm|313782")
        .await;
    assert_eq!(r.json()["total"], 1, "{}", r.text);
    // OBX-6: the local unit becomes UCUM's code, the sender's text stays the unit
    let glucose = found(&app.get("Observation?code=http://loinc.org|2345-7").await);
    let q = &glucose[0]["valueQuantity"];
    assert_eq!(
        (&q["system"], &q["code"], &q["unit"]),
        (
            &json!("http://unitsofmeasure.org"),
            &json!("mg/dL"),
            &json!("mg/dL")
        ),
        "{q}"
    );
    // and so are the reference range's (OBX-7 in OBX-6's units)
    assert_eq!(glucose[0]["referenceRange"][0]["low"]["code"], "mg/dL");
    // searchable in UCUM's terms: the 105 mg/dL glucose, above 100 mg/dL
    let r = app
        .get("Observation?value-quantity=gt100|http://unitsofmeasure.org|mg/dL")
        .await;
    assert_eq!(r.json()["total"], 1, "{}", r.text);
    // the unit no map knows is kept in its own system, and waits on the worklist
    let sodium = found(&app.get("Observation?code=http://loinc.org|2951-2").await);
    assert_eq!(
        sodium[0]["valueQuantity"]["system"],
        format!("{LOCAL}99UNIT")
    );
    let listed = worklist(&app, |codes| codes.iter().any(|c| c["code"] == "MEQL")).await;
    let elements: Vec<_> = listed
        .iter()
        .filter(|c| c["code"] == "MEQL")
        .map(|c| c["element"].as_str().unwrap())
        .collect();
    assert!(
        elements.contains(&"Observation.valueQuantity"),
        "{elements:?}"
    );
    assert!(listed.iter().any(|c| c["code"] == "NUTS"), "{listed:?}");

    // the map grows; what was stored before it is normalised again when asked
    let mut grown = app
        .get("ConceptMap?url=http://example.org/cm/gh")
        .await
        .json()["entry"][0]["resource"]
        .clone();
    grown["group"][0]["element"].as_array_mut().unwrap().push(
        json!({"code": "NUTS", "target": [{"code": "227150003", "equivalence": "equivalent"}]}),
    );
    let id = grown["id"].as_str().unwrap().to_string();
    let r = app.put(&format!("ConceptMap/{id}"), &grown).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .send(
            app.client
                .post(format!("{}/admin/terminology/renormalise", app.root)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let done = r.json();
    let nuts = done["codes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "NUTS")
        .unwrap_or_else(|| panic!("{done}"));
    assert_eq!(
        (nuts["updated"].as_u64(), &nuts["more"]),
        (Some(1), &json!(false)),
        "{done}"
    );
    let allergies = found(
        &app.get("AllergyIntolerance?code=http://snomed.info/sct|227150003")
            .await,
    );
    assert_eq!(allergies.len(), 1);
    assert_eq!(allergies[0]["meta"]["versionId"], "2");
    assert_eq!(allergies[0]["code"]["coding"][0]["code"], "NUTS");
    // off the worklist, and a second call has nothing left to do for it
    let listed = worklist(&app, |_| true).await;
    assert!(!listed.iter().any(|c| c["code"] == "NUTS"), "{listed:?}");
    let again = app
        .send(
            app.client
                .post(format!("{}/admin/terminology/renormalise", app.root)),
        )
        .await
        .json();
    assert_eq!(again["updated"], 0, "{again}");
}

/// The worklist once it satisfies `ready` (the server writes it every 2 seconds).
async fn worklist(app: &TestApp, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let url = format!("{}/admin/terminology/unmapped", app.root);
    let mut codes = Vec::new();
    for _ in 0..100 {
        let r = app.get_url(&url).await;
        assert_eq!(r.status, 200, "{}", r.text);
        codes = r.json()["codes"].as_array().unwrap().clone();
        if ready(&codes) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    codes
}

/// The v2 tables' maps, as every server publishes them, answer `$translate`.
async fn the_v2_tables_maps_are_published(app: TestApp) {
    let r = app
        .get(
            "ConceptMap/$translate?url=http://emrsync.org/fhir/ConceptMap/v2-AdministrativeSex\
             &system=http://terminology.hl7.org/CodeSystem/v2-0001&code=F",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let answer = r.json();
    let parts = answer["parameter"].as_array().unwrap();
    assert!(
        parts
            .iter()
            .any(|p| p["name"] == "result" && p["valueBoolean"] == true),
        "{answer}"
    );
    let text = answer.to_string();
    assert!(text.contains("\"female\""), "{text}");
    // the IG's sheets, one map each, searchable like any resource
    let r = app
        .get("ConceptMap?url:below=http://emrsync.org/fhir/ConceptMap/&_summary=count")
        .await;
    assert!(r.json()["total"].as_u64().unwrap() > 60, "{}", r.text);
}

crate::on_both_backends_with!(
    spawn,
    each_feed_s_local_codes_gain_their_standard_ones,
    the_v2_tables_maps_are_published,
);
