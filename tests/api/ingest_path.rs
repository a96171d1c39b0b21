//! Every source goes through one ingest path: hooks given to the server (code normalisation,
//! a source-of-truth rule, identity resolution) act the same on a REST write, a transaction
//! Bundle's entries and an HL7v2 message, and what they refuse or warn of reaches the sender.

use crate::helpers::{Backend, TestApp, spawn_with_hooks};
use crate::hl7v2::adt;
use crate::hl7v2_results::oru;
use crate::mllp_client::Mllp;
use emrsync::fhir::Issue;
use emrsync::ingest::hooks::{CodeNormaliser, IdentityResolver, Refusal, SourceOfTruth};
use emrsync::ingest::{Channel, Hooks, Source};
use emrsync::store::db::DbConnection;
use emrsync::store::{StoreError, Version, WriteKind};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const LOCAL: &str = "urn:test:local-lab";
/// The lab's local code system `99LAB`, as the HL7v2 maps name it.
const LAB_LOCAL: &str = "http://emrsync.org/hl7v2/local-code-system/99LAB";

/// Adds LOINC to the local glucose code; warns of a local code it has no map for.
#[derive(Debug)]
struct LocalLabCodes;

impl CodeNormaliser for LocalLabCodes {
    fn normalise(&self, _: &Source, _: &str, rtype: &str, resource: &mut Value) -> Vec<Issue> {
        let Some(codings) = resource
            .pointer_mut("/code/coding")
            .and_then(Value::as_array_mut)
        else {
            return vec![];
        };
        let local: Vec<String> = codings
            .iter()
            .filter(|c| c["system"] == LOCAL || c["system"] == LAB_LOCAL)
            .filter_map(|c| c["code"].as_str().map(str::to_string))
            .collect();
        let mut warnings = vec![];
        for code in local {
            match code.as_str() {
                "GLU" => codings.push(json!({"system": "http://loinc.org", "code": "2345-7"})),
                other => warnings.push(Issue::warning(
                    "code-invalid",
                    format!("{rtype}: no map for {LOCAL}|{other}"),
                )),
            }
        }
        warnings
    }
}

/// Only the pharmacy system writes allergies.
#[derive(Debug)]
struct AllergiesFromPharmacy;

impl SourceOfTruth for AllergiesFromPharmacy {
    fn admits(
        &self,
        source: &Source,
        _: WriteKind,
        rtype: &str,
        _: Option<&Value>,
        _: &mut dyn FnMut() -> Option<Value>,
    ) -> Result<(), Refusal> {
        match rtype == "AllergyIntolerance" && source.system != "PHARM@GOOD HEALTH" {
            true => Err(Refusal::Refuse(format!(
                "{rtype} is owned by PHARM@GOOD HEALTH, not {}",
                source.system
            ))),
            false => Ok(()),
        }
    }
}

/// Notes each Patient version written, with the channel it came by.
#[derive(Debug, Default)]
struct SeenPatients(Mutex<Vec<(Channel, String)>>);

impl IdentityResolver for SeenPatients {
    fn resolve(
        &self,
        _: &mut DbConnection,
        source: &Source,
        v: &Version,
    ) -> Result<(), StoreError> {
        if v.resource_type == "Patient" {
            let mut seen = self.0.lock().unwrap();
            seen.push((source.channel, format!("{}/{}", v.id, v.version_id)));
        }
        Ok(())
    }
}

async fn spawn(backend: Backend) -> (TestApp, Arc<SeenPatients>) {
    let seen = Arc::new(SeenPatients::default());
    let hooks = Hooks {
        codes: vec![Arc::new(LocalLabCodes)],
        truth: vec![Arc::new(AllergiesFromPharmacy)],
        identity: vec![seen.clone()],
        derived: Vec::new(),
    };
    let app = spawn_with_hooks(backend, |s| s.mllp = Some("127.0.0.1:0".into()), hooks).await;
    (app, seen)
}

fn codes(observation: &Value) -> Vec<String> {
    observation["code"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}|{}",
                c["system"].as_str().unwrap_or(""),
                c["code"].as_str().unwrap_or("")
            )
        })
        .collect()
}

async fn every_source_meets_the_same_hooks(backend: Backend) {
    let (app, seen) = spawn(backend).await;
    let glucose = |code: &str| {
        json!({"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": LOCAL, "code": code}]}})
    };
    // REST: the standard code is added beside the local one, and the client is told what
    // had no map
    let r = app.post("Observation", &glucose("GLU")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        codes(&r.json()),
        [format!("{LOCAL}|GLU"), "http://loinc.org|2345-7".into()]
    );
    let r = app
        .post_with(
            "Observation",
            &glucose("ZZZ"),
            ("prefer", "return=OperationOutcome"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        r.text.contains("no map for urn:test:local-lab|ZZZ"),
        "{}",
        r.text
    );
    // a transaction's entries go the same way
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": glucose("GLU"), "request": {"method": "POST", "url": "Observation"}}]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let location = r.json()["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .to_string();
    let stored = app.get(&location).await.json();
    assert!(codes(&stored).contains(&"http://loinc.org|2345-7".to_string()));

    // the source-of-truth rule refuses a REST client's allergy with its reason...
    let allergy =
        json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/x"}});
    let r = app.post("AllergyIntolerance", &allergy).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("owned by PHARM@GOOD HEALTH"), "{}", r.text);
    // ...and the registration system's admission that carries one: AE, nothing applied
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let with_allergy = adt("A01", "ING1", "MRN-ING", "V-ING", "Hooked")
        + "AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives\r";
    let ack = mllp.send(&with_allergy).await;
    assert_eq!(ack.code(), "AE", "{}", ack.text);
    assert!(
        ack.text.contains("owned by PHARM@GOOD HEALTH"),
        "{}",
        ack.text
    );
    assert!(crate::hl7v2::patient(&app, "MRN-ING").await.is_empty());

    // HL7v2: the same admission without the allergy is applied, and the identity hook saw its
    // Patient as it saw the REST client's
    let ack = mllp
        .send(&adt("A01", "ING2", "MRN-ING", "V-ING", "Hooked"))
        .await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let r = app
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "name": [{"family": "Rest"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let channels: Vec<Channel> = seen.0.lock().unwrap().iter().map(|(c, _)| *c).collect();
    assert!(
        channels.contains(&Channel::Hl7v2) && channels.contains(&Channel::Rest),
        "{channels:?}"
    );
    // a lab result's local code is normalised on the way in as a REST client's is
    let ack = mllp
        .send(
            &oru("ING3", "MRN-ING", "F", "4.1").replace("2823-3^Potassium^LN", "GLU^Glucose^99LAB"),
        )
        .await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let results = crate::hl7v2::found(&app.get("Observation?code=http://loinc.org|2345-7").await);
    assert_eq!(
        results.len(),
        3,
        "two from REST, one from the lab: {results:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_meets_the_same_hooks_sqlite() {
    every_source_meets_the_same_hooks(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_meets_the_same_hooks_postgres() {
    every_source_meets_the_same_hooks(Backend::Postgres).await
}
