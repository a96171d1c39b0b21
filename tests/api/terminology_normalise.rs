//! Local codes normalised on ingest, as an integration team meets it: a lab sends its own
//! codes in an ORU; the one a normalisation map (a ConceptMap the team wrote) knows gains its
//! LOINC coding beside the lab's own; the one no map knows is stored as it came, the message
//! is still accepted, and the code waits on the unmapped codes worklist until a map for it is
//! written. Another lab's codes are not translated by this lab's map.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::mllp_client::Mllp;
use serde_json::{Value, json};

const LOCAL: &str = "http://emrsync.org/hl7v2/local-code-system/L";

async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |s| s.mllp = Some("127.0.0.1:0".into())).await
}

fn oru(control: &str, facility: &str, mrn: &str) -> String {
    format!(
        "MSH|^~\\&|LAB|{facility}|EMRSYNC|HUB|20261125130000||ORU^R01^ORU_R01|{control}|P|2.5.1\r\
         PID|1||{mrn}^^^GH&1.2.840.114350.1&ISO^MR||Everyman^Adam||19800214|M\r\
         OBR|1|PL-{control}^EPIC|FL-{control}^LAB|24323-8^Comprehensive metabolic panel^LN|||20261125123000|||||||||||||||20261125125900|||F\r\
         OBX|1|NM|GLU^Glucose^L||105|mg/dL^mg/dL^UCUM|70-99|H|||F|||20261125123000\r\
         OBX|2|NM|XYZ^Mystery analyte^L||7|U/L^U/L^UCUM||N|||F|||20261125123000\r"
    )
}

fn map(url: &str, sources: &str, code: &str, loinc: &str, display: &str) -> Value {
    json!({"resourceType": "ConceptMap", "url": url, "status": "active",
        "useContext": [{"code": {"system": "http://emrsync.org/fhir/CodeSystem/usage-context",
                                 "code": "normalise-on-ingest"},
                        "valueCodeableConcept": {"text": sources}}],
        "group": [{"source": LOCAL, "target": "http://loinc.org",
                   "element": [{"code": code, "target": [
                       {"code": loinc, "display": display, "equivalence": "equivalent"}]}]}]})
}

/// The codings of the patient's Observation whose local code is `local`.
async fn codings(app: &TestApp, mrn: &str, local: &str) -> Vec<Value> {
    let r = app
        .get(&format!(
            "Observation?patient.identifier={mrn}&code={LOCAL}|{local}"
        ))
        .await;
    let bundle = r.json();
    assert_eq!(bundle["total"], 1, "{}", r.text);
    bundle["entry"][0]["resource"]["code"]["coding"]
        .as_array()
        .unwrap()
        .clone()
}

/// The worklist's entries (system, code) of `source`, once the server has written them.
async fn worklist(app: &TestApp, source: &str) -> Vec<(String, String, String)> {
    let url = format!(
        "{}/admin/terminology/unmapped?source={}",
        app.root,
        source.replace(' ', "%20")
    );
    let r = app.get_url(&url).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["code"].as_str().unwrap().to_string(),
                c["element"].as_str().unwrap().to_string(),
                c["example"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn local_codes_gain_the_standard_one_and_the_rest_wait_on_the_worklist(app: TestApp) {
    app.create(&map(
        "http://example.org/cm/gh-lab",
        "LAB@GOOD HEALTH",
        "GLU",
        "2345-7",
        "Glucose [Mass/volume] in Serum or Plasma",
    ))
    .await;
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp.send(&oru("N1", "GOOD HEALTH", "NORM1")).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    // the lab's code is kept, LOINC's added beside it
    let glucose = codings(&app, "NORM1", "GLU").await;
    assert_eq!(glucose[0]["code"], "GLU");
    assert!(
        glucose
            .iter()
            .any(|c| c["system"] == "http://loinc.org" && c["code"] == "2345-7"),
        "{glucose:?}"
    );
    // searchable by the standard code
    let r = app.get("Observation?code=http://loinc.org|2345-7").await;
    assert_eq!(r.json()["total"], 1, "{}", r.text);
    // the unmapped one: stored as it came, and on the worklist with where it came from
    assert_eq!(codings(&app, "NORM1", "XYZ").await.len(), 1);
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = worklist(&app, "LAB@GOOD HEALTH").await;
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let xyz = listed
        .iter()
        .find(|(code, ..)| code == "XYZ")
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!(xyz.1, "Observation.code");
    assert!(xyz.2.starts_with("Observation of "), "{xyz:?}");
    assert!(!listed.iter().any(|(code, ..)| code == "GLU"), "{listed:?}");
    // another lab's GLU is not this lab's: not translated, and on the worklist under its name
    let ack = mllp.send(&oru("N2", "OTHER LAB", "NORM2")).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    assert_eq!(codings(&app, "NORM2", "GLU").await.len(), 1);
    // a map for XYZ written: it leaves the worklist, and the next message has it translated
    app.create(&map(
        "http://example.org/cm/gh-lab-2",
        "LAB@GOOD HEALTH",
        "XYZ",
        "1920-8",
        "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
    ))
    .await;
    assert!(
        !worklist(&app, "LAB@GOOD HEALTH")
            .await
            .iter()
            .any(|(code, ..)| code == "XYZ")
    );
    let ack = mllp.send(&oru("N3", "GOOD HEALTH", "NORM3")).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let xyz = codings(&app, "NORM3", "XYZ").await;
    assert!(xyz.iter().any(|c| c["code"] == "1920-8"), "{xyz:?}");
    // the worklist is for people who may read every patient's data
    let patient_app = app.token_for("patient/*.rs", Some("p1"));
    let r = app
        .send(
            app.anonymous
                .get(format!("{}/admin/terminology/unmapped", app.root))
                .bearer_auth(patient_app),
        )
        .await;
    assert_eq!(r.status, 403);
}

crate::on_both_backends_with!(
    spawn,
    local_codes_gain_the_standard_one_and_the_rest_wait_on_the_worklist,
);
