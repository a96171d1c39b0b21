//! Sync out to a FHIR EMR (issue 23): the target is a second emrsync (a real FHIR server on
//! loopback) that admits the hub as a symmetric client; the hub gets its token by OAuth2 client
//! credentials (the `oauth2` crate) and sends each change as a transaction of conditional
//! updates by identifier. A stay and its result arrive there as one patient, with references
//! that resolve at the target; an update changes the same resources; the target's refusal
//! (409) waits in the outbound exception queue and goes on replay.

use crate::helpers::{Backend, TestApp, spawn};
use crate::routing::{admin_get, admin_put, send};
use emrsync::auth::clients::{self, ClientKind, NewClient};
use serde_json::{Value, json};
use std::time::Duration;

const PID: &str = "PID|1||M800^^^GH&1.2.840.114350.1&ISO^MR||Fhir^Felix||19600606|M\r";

fn adt(trigger: &str, control: &str, family: &str, class: &str) -> String {
    format!(
        "MSH|^~\\&|REG|GOOD HEALTH|EMRSYNC|HUB|20261206120000||ADT^{trigger}^ADT_A01|{control}|P|2.5.1\r\
         EVN|{trigger}|20261206120000\r{}\
         PV1|1|{class}|4W^401^^GOOD HEALTH||||||||||||||||V800^^^GH&1.2.840.114350.1&ISO^VN|||||||||||||||||||||||||20261206113000\r",
        PID.replace("Fhir^", &format!("{family}^"))
    )
}

fn oru(control: &str) -> String {
    format!(
        "MSH|^~\\&|LAB|GOOD HEALTH|EMRSYNC|HUB|20261206130000||ORU^R01^ORU_R01|{control}|P|2.5.1\r{PID}\
         OBR|1|PL-800^CPOE|F-800^LAB|2823-3^Potassium^LN|||20261206123000|||||||||||||||20261206125900|||F\r\
         OBX|1|NM|2823-3^Potassium^LN||4.4|mmol/L^mmol/L^UCUM|3.5-5.1|N|||F|||20261206123000\r"
    )
}

/// The target's resources of `query` (waiting up to 20 s for `n` of them).
async fn at_target(emr: &TestApp, query: &str, n: usize) -> Vec<Value> {
    let mut found = Vec::new();
    for _ in 0..200 {
        found = crate::hl7v2::found(&emr.get(query).await);
        if found.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    found
}

async fn a_stay_and_its_result_reach_a_fhir_emr() {
    let hub = crate::routing::spawn(Backend::Sqlite).await;
    let emr = spawn(Backend::Postgres).await;
    clients::add(
        &mut emr.db(),
        &NewClient {
            client_id: "hub".into(),
            kind: ClientKind::Symmetric,
            scope: "system/*.cruds".into(),
            redirect_uris: Vec::new(),
            secret: Some("hub's long secret".into()),
            jwks: None,
            jwks_uri: None,
        },
    )
    .unwrap();
    let secret = hub.dir.path().join("emr-secret");
    std::fs::write(&secret, "hub's long secret\n").unwrap();
    let routes = json!({"targets": [{
        "name": "fhir-emr",
        "channel": {"type": "fhir", "base": emr.base, "timeout_ms": 5000,
                    "oauth2": {"token_url": format!("{}/auth/token", emr.root), "client_id": "hub",
                               "client_secret_file": secret, "scope": "system/*.cruds"}},
        "format": {"type": "fhir"},
        "events": [{"criteria": "Patient"}, {"criteria": "Encounter"},
                   {"criteria": "DiagnosticReport"}, {"criteria": "Observation"}]}]});
    let r = admin_put(&hub, "routes", &routes).await;
    assert_eq!(r.status, 200, "{}", r.text);
    send(&hub, &adt("A04", "F1", "Fhir", "E")).await;
    send(&hub, &adt("A01", "F2", "Fhir", "I")).await;
    send(&hub, &oru("F3")).await;
    let patients = at_target(&emr, "Patient?identifier=M800", 1).await;
    assert_eq!(patients.len(), 1, "{patients:#?}");
    let pid = patients[0]["id"].as_str().unwrap().to_string();
    assert_eq!(patients[0]["name"][0]["family"], "Fhir");
    let obs = at_target(&emr, &format!("Observation?subject=Patient/{pid}"), 1).await;
    assert_eq!(obs.len(), 1, "{obs:#?}");
    assert_eq!(obs[0]["valueQuantity"]["value"], 4.4);
    let reports = at_target(&emr, &format!("DiagnosticReport?subject=Patient/{pid}"), 1).await;
    assert_eq!(reports.len(), 1);
    let result = reports[0]["result"][0]["reference"].as_str().unwrap();
    assert_eq!(
        result,
        format!("Observation/{}", obs[0]["id"].as_str().unwrap())
    );
    let encounters = at_target(&emr, &format!("Encounter?subject=Patient/{pid}"), 1).await;
    assert_eq!(encounters.len(), 1, "{encounters:#?}");
    assert_eq!(encounters[0]["class"]["code"], "IMP");
    // the same patient renamed: the same resource at the target, updated
    send(&hub, &adt("A08", "F4", "Renamed", "I")).await;
    let mut renamed = Vec::new();
    for _ in 0..200 {
        renamed = at_target(&emr, "Patient?identifier=M800", 1).await;
        if renamed[0]["name"][0]["family"] == "Renamed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(renamed.len(), 1);
    assert_eq!(renamed[0]["id"].as_str().unwrap(), pid);
    assert_eq!(renamed[0]["name"][0]["family"], "Renamed");

    // the EMR refuses a change (its own source of truth): 409, to the exception queue
    let truth = json!({"truth": [{"domain": "adt", "resources": ["Patient"], "elements": ["name"],
                                  "owners": ["client someone-else"]}]});
    assert_eq!(admin_put(&emr, "routes", &truth).await.status, 200);
    send(&hub, &adt("A08", "F5", "Refused", "I")).await;
    let mut failed = Value::Null;
    for _ in 0..200 {
        failed = admin_get(&hub, "outbound?status=failed").await;
        if !failed["messages"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let message = &failed["messages"][0];
    assert_eq!(message["ackCode"], "409", "{failed}");
    assert!(
        message["lastError"]
            .as_str()
            .unwrap()
            .contains("Patient.name belongs to the 'adt' domain"),
        "{failed}"
    );
    // the rule lifted, the replay goes through
    assert_eq!(
        admin_put(&emr, "routes", &json!({"truth": []}))
            .await
            .status,
        200
    );
    let seq = message["seq"].as_i64().unwrap();
    let r = hub
        .send(
            hub.client
                .post(format!("{}/admin/outbound/{seq}/replay", hub.root)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut after = Vec::new();
    for _ in 0..200 {
        after = at_target(&emr, "Patient?identifier=M800", 1).await;
        if after[0]["name"][0]["family"] == "Refused" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(after[0]["name"][0]["family"], "Refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stay_and_its_result_reach_a_fhir_emr_over_oauth2() {
    a_stay_and_its_result_reach_a_fhir_emr().await
}
