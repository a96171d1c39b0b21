//! Reading through identity as clients meet it: a search with `:mdm` on a patient reference
//! finds what refers to any record of the person (named by one record or by its golden
//! record), a patient-scoped token still sees its own record's only, a conditional write
//! refuses it, and a Subscription filtered through identity hears of every record of the
//! person, a record linked after its first write included.

use crate::helpers::{Backend, TestApp, matched_ids, sorted, spawn_with};
use crate::receiver::{Receiver, focuses, kind};
use crate::subscriptions::{subscription, wait_status};
use serde_json::{Value, json};

async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |s| s.subscription_retry_max_secs = 1).await
}

fn patient(given: &str, family: &str, birth: &str, mrn: &str) -> Value {
    json!({"resourceType": "Patient",
           "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": mrn}],
           "name": [{"family": family, "given": [given]}],
           "gender": "male", "birthDate": birth})
}

fn observation(patient: &str, code: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
           "subject": {"reference": format!("Patient/{patient}")}})
}

fn encounter(patient: &str) -> Value {
    json!({"resourceType": "Encounter", "status": "in-progress",
           "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
           "subject": {"reference": format!("Patient/{patient}")}})
}

async fn searches_read_through_identity_and_no_further(app: TestApp) {
    // one person from two sources (one MRN), and someone else
    let (a1, _) = app
        .create(&patient("Tomasz", "Wieczorek", "1958-06-21", "R-1"))
        .await;
    let (a2, _) = app
        .create(&patient("Tomasz", "Wieczorek", "1958-06-21", "R-1"))
        .await;
    let (b, _) = app
        .create(&patient("Henrik", "Aalto", "1990-12-01", "R-2"))
        .await;
    let (o1, _) = app.create(&observation(&a1, "2345-7")).await;
    let (o2, _) = app.create(&observation(&a2, "2345-7")).await;
    let (o3, _) = app.create(&observation(&b, "2345-7")).await;
    app.mpi_settled().await;
    let person = app
        .get_url(&format!("{}/admin/mpi/patients/{a1}", app.root))
        .await
        .json()["person"]
        .as_str()
        .unwrap()
        .to_string();

    // a plain reference is one record; through identity, the person
    let r = app.get(&format!("/Observation?subject=Patient/{a1}")).await;
    assert_eq!(matched_ids(&r.json()), std::slice::from_ref(&o1));
    let both = sorted(vec![o1.clone(), o2.clone()]);
    let r = app
        .get(&format!("/Observation?subject:mdm=Patient/{a1}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(matched_ids(&r.json()), both, "{}", r.text);
    let r = app.get(&format!("/Observation?patient:mdm={a2}")).await;
    assert_eq!(matched_ids(&r.json()), both, "{}", r.text);
    // the golden record's id names the person
    let r = app
        .get(&format!("/Observation?patient:mdm=Patient/{person}"))
        .await;
    assert_eq!(matched_ids(&r.json()), both, "{}", r.text);
    // with other values and other parameters, as any clause
    let r = app
        .get(&format!(
            "/Observation?patient:mdm=Patient/{a1},Patient/{b}&code=2345-7"
        ))
        .await;
    assert_eq!(
        matched_ids(&r.json()),
        sorted(vec![o1.clone(), o2.clone(), o3.clone()])
    );
    // a link never widens what a patient-scoped token reads
    let token = app.token_for("patient/*.rs", Some(&a1));
    let r = app
        .send_as(
            &token,
            reqwest::Method::GET,
            &format!("/Observation?subject:mdm=Patient/{a1}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(matched_ids(&r.json()), std::slice::from_ref(&o1));

    // where it does not apply, said so
    let r = app
        .get(&format!("/Observation?encounter:mdm=Encounter/{o1}"))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("mdm"), "{}", r.text);
    let r = app
        .get(&format!("/Observation?subject:mdm=Group/{o1}"))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // a conditional write matches records, not persons
    let r = app
        .client
        .post(format!("{}/Observation", app.base))
        .header("Content-Type", "application/fhir+json")
        .header("If-None-Exist", format!("subject:mdm=Patient/{a1}"))
        .json(&observation(&a1, "2345-7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let said: Value = r.json().await.unwrap();
    assert!(said.to_string().contains("mdm"), "{said}");
}

async fn a_subscription_through_identity_hears_of_every_record(app: TestApp) {
    let hook = Receiver::start().await;
    let (a1, _) = app
        .create(&patient("Ines", "Carvalho", "1947-09-09", "S-1"))
        .await;
    let (a2, _) = app
        .create(&patient("Ines", "Carvalho", "1947-09-09", "S-1"))
        .await;
    let (b, _) = app
        .create(&patient("Rui", "Pestana", "1999-01-15", "S-2"))
        .await;
    app.mpi_settled().await;
    let person = app
        .get_url(&format!("{}/admin/mpi/patients/{a1}", app.root))
        .await
        .json()["person"]
        .as_str()
        .unwrap()
        .to_string();
    let (sid, _) = app
        .create(&subscription(
            "encounter-start",
            &[&format!("Encounter?patient:mdm=Patient/{person}")],
            &hook.url,
            "id-only",
        ))
        .await;
    wait_status(&app, &sid, "active").await;

    let (e1, _) = app.create(&encounter(&a1)).await;
    let (e2, _) = app.create(&encounter(&a2)).await;
    app.create(&encounter(&b)).await; // someone else: not heard of
    // a third record of the person and its encounter in one transaction: heard of once the
    // record is linked
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b8e7a44-5d32-4c55-9a0e-3f1c2b7d9e01",
         "resource": patient("Ines", "Carvalho", "1947-09-09", "S-1"),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Encounter", "status": "in-progress",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                      "subject": {"reference": "urn:uuid:0b8e7a44-5d32-4c55-9a0e-3f1c2b7d9e01"}},
         "request": {"method": "POST", "url": "Encounter"}}]});
    let r = app.post("", &tx).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let e3 = r.json()["entry"][1]["response"]["location"]
        .as_str()
        .unwrap()
        .split('/')
        .nth(1)
        .unwrap()
        .to_string();

    let is_event = |r: &crate::receiver::Received| kind(&r.body) == "event-notification";
    hook.wait_until(15, "three admissions", |g| {
        g.iter().filter(|r| is_event(r)).count() >= 3
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let heard: Vec<String> = hook
        .received()
        .iter()
        .filter(|r| is_event(r))
        .flat_map(|r| focuses(&r.body))
        .collect();
    let want: Vec<String> = [e1, e2, e3]
        .iter()
        .map(|e| format!("{}/Encounter/{e}", app.base))
        .collect();
    assert_eq!(heard, want, "in order, and no one else's");
}

crate::on_both_backends_with!(
    spawn,
    searches_read_through_identity_and_no_further,
    a_subscription_through_identity_hears_of_every_record,
);
