//! HL7v2 over a real MLLP socket: ACK after commit, stable identity, idempotent resends, NAKs
//! that say why, and the server carrying on after bad input.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::mllp_client::{Mllp, frame};
use crate::receiver::{Receiver, focuses, kind};
use crate::subscriptions::subscription;
use diesel::prelude::*;
use emrsync::store::schema::{audit_events, hl7v2_messages, outbox, resource_versions};
use serde_json::Value;

const MRN_SYSTEM: &str = "urn:oid:1.2.840.114350.1";

pub async fn spawn_mllp(backend: Backend) -> TestApp {
    spawn_with(backend, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.mllp_max_bytes = 64 * 1024;
    })
    .await
}

/// An ADT message of `trigger` for patient `mrn` in visit `visit`.
pub fn adt(trigger: &str, control: &str, mrn: &str, visit: &str, family: &str) -> String {
    let discharge = if trigger == "A03" {
        "20261125180000"
    } else {
        ""
    };
    format!(
        "MSH|^~\\&|REG|GOOD HEALTH|EMRSYNC|HUB|20261125120000||ADT^{trigger}^ADT_A01|{control}|P|2.5.1\r\
         EVN|{trigger}|20261125120000\r\
         PID|1||{mrn}^^^GH&1.2.840.114350.1&ISO^MR~123-45-6789^^^SSA^SS||{family}^Adam^Q||19800214|M|||12 Main St^^Springfield^IL^62701^USA^H||^PRN^PH^^1^217^5551234\r\
         PV1|1|I|4W^401^B^GOOD HEALTH||||1234^Welby^Marcus^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO||||||||||||{visit}^^^GH&1.2.840.114350.1&ISO^VN|||||||||||||||||||||||||20261125113000|{discharge}\r"
    )
}

fn found(r: &crate::helpers::Resp) -> Vec<Value> {
    r.json()["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect()
}

async fn patient(app: &TestApp, mrn: &str) -> Vec<Value> {
    found(
        &app.get(&format!("Patient?identifier={MRN_SYSTEM}|{mrn}"))
            .await,
    )
}

async fn an_admission_becomes_resources_after_an_aa(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp
        .send(&adt("A01", "CTRL1", "MRN100", "V100", "Everyman"))
        .await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    assert_eq!(ack.field("MSA", 2), "CTRL1");
    // sender and receiver swap places in the ACK
    assert_eq!(ack.field("MSH", 3), "EMRSYNC");
    assert_eq!(ack.field("MSH", 5), "REG");
    assert!(ack.field("MSH", 9).starts_with("ACK^A01"));

    // the ACK came after the commit: everything is readable at once
    let p = patient(&app, "MRN100").await;
    assert_eq!(p.len(), 1);
    let p = &p[0];
    assert_eq!(p["name"][0]["family"], "Everyman");
    assert_eq!(p["name"][0]["given"][0], "Adam");
    assert_eq!(p["birthDate"], "1980-02-14");
    assert_eq!(p["gender"], "male");
    assert_eq!(p["address"][0]["city"], "Springfield");
    assert_eq!(p["telecom"][0]["value"], "+1 217 5551234");
    assert_eq!(
        p["identifier"][1]["system"],
        "http://hl7.org/fhir/sid/us-ssn"
    );
    let pid = p["id"].as_str().unwrap();
    let encounters = found(&app.get(&format!("Encounter?patient=Patient/{pid}")).await);
    assert_eq!(encounters.len(), 1);
    let e = &encounters[0];
    assert_eq!(e["status"], "in-progress");
    assert_eq!(e["class"]["code"], "IMP");
    assert_eq!(e["identifier"][0]["value"], "V100");
    assert_eq!(e["period"]["start"], "2026-11-25T11:30:00Z");
    let loc = app
        .get(e["location"][0]["location"]["reference"].as_str().unwrap())
        .await
        .json();
    assert_eq!(loc["name"], "4W 401 B GOOD HEALTH");
    let doc = app
        .get(
            e["participant"][0]["individual"]["reference"]
                .as_str()
                .unwrap(),
        )
        .await
        .json();
    assert_eq!(doc["name"][0]["family"], "Welby");

    // one correlation id links the archived message, the versions, audit rows and events
    let mut db = app.db();
    let (status, correlation): (String, String) = hl7v2_messages::table
        .filter(hl7v2_messages::control_id.eq("CTRL1"))
        .select((hl7v2_messages::status, hl7v2_messages::correlation_id))
        .first(&mut db)
        .unwrap();
    assert_eq!(status, "applied");
    let versions: i64 = resource_versions::table
        .filter(resource_versions::correlation_id.eq(&correlation))
        .count()
        .get_result(&mut db)
        .unwrap();
    assert_eq!(versions, 4, "Patient, Encounter, Location, Practitioner");
    let events: i64 = outbox::table
        .filter(outbox::correlation_id.eq(&correlation))
        .count()
        .get_result(&mut db)
        .unwrap();
    assert_eq!(events, 4);
    let audits: i64 = audit_events::table
        .filter(audit_events::correlation_id.eq(&correlation))
        .count()
        .get_result(&mut db)
        .unwrap();
    assert!(audits >= 4, "{audits}");
}

async fn resends_updates_and_discharges_land_on_the_same_resources(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let a01 = adt("A01", "C1", "MRN200", "V200", "Before");
    assert_eq!(mllp.send(&a01).await.code(), "AA");
    // the same message again (same sender, facility and control id): AA, applied once
    let again = mllp.send(&a01).await;
    assert_eq!(again.code(), "AA", "{}", again.text);
    let p = patient(&app, "MRN200").await;
    assert_eq!(p[0]["meta"]["versionId"], "1");
    // an update of the demographics and a discharge: the same Patient and Encounter
    assert_eq!(
        mllp.send(&adt("A08", "C2", "MRN200", "V200", "After"))
            .await
            .code(),
        "AA"
    );
    assert_eq!(
        mllp.send(&adt("A03", "C3", "MRN200", "V200", "After"))
            .await
            .code(),
        "AA"
    );
    let p = patient(&app, "MRN200").await;
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["name"][0]["family"], "After");
    let pid = p[0]["id"].as_str().unwrap();
    let encounters = found(&app.get(&format!("Encounter?patient=Patient/{pid}")).await);
    assert_eq!(encounters.len(), 1, "one visit, however many messages");
    assert_eq!(encounters[0]["status"], "finished");
    assert_eq!(encounters[0]["period"]["end"], "2026-11-25T18:00:00Z");
    let messages: i64 = hl7v2_messages::table
        .count()
        .get_result(&mut app.db())
        .unwrap();
    assert_eq!(messages, 3, "the resend is not a message of its own");
}

async fn bad_input_gets_a_nak_and_the_server_carries_on(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    // bytes outside any frame are skipped
    mllp.write_raw(b"GET / HTTP/1.1\r\n\r\n").await;
    // a header that cannot be read: AR, with where and why
    let ack = mllp
        .send("MSH|^&&^|X|Y|Z|W|2026||ADT^A01|Q1|P|2.5\rPID|1\r")
        .await;
    assert_eq!(ack.code(), "AR", "{}", ack.text);
    assert_eq!(ack.error_location(), "MSH-2");
    assert_eq!(ack.error_code(), "102");
    // a type we do not take: AR 200 (and a trigger we do not take: AR 201)
    let ack = mllp
        .send("MSH|^~\\&|X|Y|Z|W|2026||QRY^A19|Q2|P|2.5\rQRD|1\r")
        .await;
    assert_eq!(
        (ack.code().as_str(), ack.error_code().as_str()),
        ("AR", "200"),
        "{}",
        ack.text
    );
    let ack = mllp
        .send(&adt("A01", "Q3", "MRN300", "V300", "X").replace("ADT^A01", "ADT^A99"))
        .await;
    assert_eq!(
        (ack.code().as_str(), ack.error_code().as_str()),
        ("AR", "201"),
        "{}",
        ack.text
    );
    // understood but not applicable (no patient identifier): AE, and kept for replay
    let no_id = adt("A01", "Q4", "", "V400", "Nobody")
        .replace("^^^GH&1.2.840.114350.1&ISO^MR~123-45-6789^^^SSA^SS", "");
    let ack = mllp.send(&no_id).await;
    assert_eq!(ack.code(), "AE", "{}", ack.text);
    assert_eq!(ack.error_location(), "PID-3");
    assert_eq!(ack.error_code(), "101");
    let (status, raw): (String, String) = hl7v2_messages::table
        .filter(hl7v2_messages::control_id.eq("Q4"))
        .select((hl7v2_messages::status, hl7v2_messages::raw))
        .first(&mut app.db())
        .unwrap();
    assert_eq!(status, "failed");
    assert_eq!(raw, no_id);
    // too large for the limit: AR, the rest of the stream still read
    let huge = adt("A01", "Q5", "MRN500", "V500", &"X".repeat(70 * 1024));
    let ack = mllp.send(&huge).await;
    assert_eq!(ack.code(), "AR", "{}", ack.text);
    // nothing of the refused messages was written
    assert!(patient(&app, "MRN300").await.is_empty());
    assert!(patient(&app, "MRN500").await.is_empty());

    // the same connection goes on, and a message arriving in pieces is read whole
    let bytes = frame(adt("A04", "Q6", "MRN600", "V600", "Pieces").as_bytes());
    for chunk in bytes.chunks(7) {
        mllp.write_raw(chunk).await;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(mllp.ack().await.code(), "AA");
    assert_eq!(patient(&app, "MRN600").await.len(), 1);
    // and a connection dropped mid-message harms no other
    let mut broken = Mllp::connect(app.mllp.unwrap()).await;
    broken.write_raw(&bytes[..bytes.len() / 2]).await;
    drop(broken);
    let mut fresh = Mllp::connect(app.mllp.unwrap()).await;
    assert_eq!(
        fresh
            .send(&adt("A08", "Q7", "MRN600", "V600", "Whole"))
            .await
            .code(),
        "AA"
    );
}

async fn many_connections_at_once(app: TestApp) {
    let port = app.mllp.unwrap();
    let mut tasks = Vec::new();
    for c in 0..8 {
        tasks.push(tokio::spawn(async move {
            let mut mllp = Mllp::connect(port).await;
            for i in 0..15 {
                let ack = mllp
                    .send(&adt(
                        "A01",
                        &format!("M{c}-{i}"),
                        &format!("MRN-{c}-{i}"),
                        &format!("V-{c}-{i}"),
                        "Many",
                    ))
                    .await;
                assert_eq!(ack.code(), "AA", "{}", ack.text);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = app.get("Patient?family=Many&_summary=count").await.json();
    assert_eq!(r["total"], 120);
}

crate::on_both_backends_with!(
    spawn_mllp,
    an_admission_becomes_resources_after_an_aa,
    resends_updates_and_discharges_land_on_the_same_resources,
    bad_input_gets_a_nak_and_the_server_carries_on,
    many_connections_at_once,
);

/// A change that came in over MLLP reaches subscribers like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_over_mllp_notifies_its_subscribers() {
    let app = spawn_mllp(Backend::Sqlite).await;
    let hook = Receiver::start().await;
    let (_, _) = app
        .create(&subscription("encounter-start", &[], &hook.url, "id-only"))
        .await;
    hook.wait_until(10, "the handshake", |g| !g.is_empty())
        .await;
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    assert_eq!(
        mllp.send(&adt("A01", "N1", "MRN700", "V700", "Notified"))
            .await
            .code(),
        "AA"
    );
    let got = hook
        .wait_until(10, "the admission's notification", |g| {
            g.iter().any(|r| kind(&r.body) == "event-notification")
        })
        .await;
    let event = got
        .iter()
        .find(|r| kind(&r.body) == "event-notification")
        .unwrap();
    let focus = focuses(&event.body);
    assert_eq!(focus.len(), 1);
    assert!(focus[0].contains("/Encounter/"), "{focus:?}");
}

/// An ORU^R01 from the lab for patient `mrn`: a basic metabolic panel with a potassium
/// (`status`, `value`), a creatinine given as SN and a culture result as CWE.
pub fn oru(control: &str, mrn: &str, status: &str, potassium: &str) -> String {
    format!(
        "MSH|^~\\&|LAB|GOOD HEALTH|EMRSYNC|HUB|20261125130000||ORU^R01^ORU_R01|{control}|P|2.5.1\r\
         PID|1||{mrn}^^^GH&1.2.840.114350.1&ISO^MR||Everyman^Adam||19800214|M\r\
         OBR|1|PL-1^EPIC|FL-77^LAB|24323-8^Comprehensive metabolic panel^LN|||20261125123000|||||||||||||||20261125125900|||{status}\r\
         OBX|1|NM|2823-3^Potassium^LN||{potassium}|mmol/L^mmol/L^UCUM|3.5-5.1|H|||{status}|||20261125123000\r\
         OBX|2|SN|2160-0^Creatinine^LN||<^0.5|mg/dL^mg/dL^UCUM|0.7-1.3|L|||{status}\r\
         OBX|3|CWE|625-4^Bacteria identified^LN||27268008^Salmonella^SCT||||||{status}\r\
         OBX|4|TX|48767-8^Comment^LN||First line of the comment||||||{status}\r\
         OBX|5|TX|48767-8^Comment^LN||second line||||||{status}\r"
    )
}

async fn a_result_and_its_correction(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp.send(&oru("R1", "MRN800", "F", "5.9")).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let pid = patient(&app, "MRN800").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reports = found(
        &app.get(&format!("DiagnosticReport?patient=Patient/{pid}"))
            .await,
    );
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["status"], "final");
    assert_eq!(reports[0]["code"]["coding"][0]["code"], "24323-8");
    assert_eq!(
        reports[0]["result"].as_array().unwrap().len(),
        4,
        "the two text lines are one"
    );
    let potassium = found(
        &app.get(&format!(
            "Observation?patient=Patient/{pid}&code=http://loinc.org|2823-3"
        ))
        .await,
    );
    assert_eq!(potassium.len(), 1);
    let k = &potassium[0];
    assert_eq!(k["status"], "final");
    assert_eq!(k["valueQuantity"]["value"], 5.9);
    assert_eq!(k["valueQuantity"]["code"], "mmol/L");
    assert_eq!(k["valueQuantity"]["system"], "http://unitsofmeasure.org");
    assert_eq!(k["referenceRange"][0]["low"]["value"], 3.5);
    assert_eq!(k["referenceRange"][0]["high"]["value"], 5.1);
    assert_eq!(k["interpretation"][0]["coding"][0]["code"], "H");
    assert_eq!(k["category"][0]["coding"][0]["code"], "laboratory");
    assert_eq!(k["effectiveDateTime"], "2026-11-25T12:30:00Z");
    let all = found(&app.get(&format!("Observation?patient=Patient/{pid}")).await);
    let by_code = |c: &str| {
        all.iter()
            .find(|o| o["code"]["coding"][0]["code"] == c)
            .unwrap()
            .clone()
    };
    assert_eq!(by_code("2160-0")["valueQuantity"]["comparator"], "<");
    assert_eq!(by_code("2160-0")["valueQuantity"]["value"], 0.5);
    assert_eq!(
        by_code("625-4")["valueCodeableConcept"]["coding"][0]["system"],
        "http://snomed.info/sct"
    );
    assert_eq!(
        by_code("48767-8")["valueString"],
        "First line of the comment\nsecond line"
    );

    // the lab corrects the potassium: the same Observation, a new version
    let ack = mllp.send(&oru("R2", "MRN800", "C", "4.9")).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let k2 = &found(
        &app.get(&format!(
            "Observation?patient=Patient/{pid}&code=http://loinc.org|2823-3"
        ))
        .await,
    )[0];
    assert_eq!(k2["id"], k["id"]);
    assert_eq!(k2["meta"]["versionId"], "2");
    assert_eq!(k2["status"], "corrected");
    assert_eq!(k2["valueQuantity"]["value"], 4.9);
    let r = app
        .get(&format!("DiagnosticReport?patient=Patient/{pid}"))
        .await;
    assert_eq!(found(&r)[0]["status"], "corrected");

    // a value that is not a number: AE at OBX-5, nothing written, kept for replay
    let ack = mllp.send(&oru("R3", "MRN801", "F", "high")).await;
    assert_eq!(ack.code(), "AE", "{}", ack.text);
    assert_eq!(ack.error_location(), "OBX-5");
    assert_eq!(ack.error_code(), "102");
    assert!(patient(&app, "MRN801").await.is_empty());
    let status: String = hl7v2_messages::table
        .filter(hl7v2_messages::control_id.eq("R3"))
        .select(hl7v2_messages::status)
        .first(&mut app.db())
        .unwrap();
    assert_eq!(status, "failed");
}

crate::on_both_backends_with!(spawn_mllp, a_result_and_its_correction);

/// A lab result that came in over MLLP reaches a lab-result subscriber, with the Observation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_result_over_mllp_notifies_its_subscribers() {
    let app = spawn_mllp(Backend::Sqlite).await;
    let hook = Receiver::start().await;
    app.create(&subscription(
        "lab-result",
        &["Observation?code=http://loinc.org|2823-3"],
        &hook.url,
        "full-resource",
    ))
    .await;
    hook.wait_until(10, "the handshake", |g| !g.is_empty())
        .await;
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    assert_eq!(
        mllp.send(&oru("L1", "MRN900", "F", "3.1")).await.code(),
        "AA"
    );
    // of the Observations only the potassium passes the filter (the report, which the filter
    // does not name, comes too), and it arrives whole
    let got = hook
        .wait_until(10, "both notifications", |g| {
            g.iter()
                .flat_map(|r| focuses(&r.body))
                .filter(|f| f.contains("/Observation/") || f.contains("/DiagnosticReport/"))
                .count()
                >= 2
        })
        .await;
    let observed: Vec<String> = got
        .iter()
        .flat_map(|r| focuses(&r.body))
        .filter(|f| f.contains("/Observation/"))
        .collect();
    assert_eq!(observed.len(), 1, "{observed:?}");
    let entry = got
        .iter()
        .flat_map(|r| r.body["entry"].as_array().unwrap().clone())
        .find(|e| e["fullUrl"] == observed[0].as_str())
        .unwrap();
    assert_eq!(entry["resource"]["valueQuantity"]["value"], 3.1);
}

/// The exception queue: a message that could not be applied is listed with its reason and
/// raw text (to a token that may read every Patient), replayed as it was (still AE), replayed
/// corrected (AA, the entry closed), and `emrsync replay` does the same from the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exception_queue_lists_and_replays() {
    let app = spawn_mllp(Backend::Sqlite).await;
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let bad = oru("X1", "MRN950", "F", "high");
    assert_eq!(mllp.send(&bad).await.code(), "AE");
    let admin = |path: &str| format!("{}/admin/hl7v2/{path}", app.root);

    // who may look: not without a token, not a patient's token
    let r = app.anonymous.get(admin("messages")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let patient_token = app.token_for("patient/*.rs", Some("someone"));
    let r = app
        .anonymous
        .get(admin("messages"))
        .bearer_auth(&patient_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let queue: Value = app
        .client
        .get(admin("messages?status=failed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = queue["messages"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{queue}");
    let e = &entries[0];
    assert_eq!(e["controlId"], "X1");
    assert_eq!(e["messageType"], "ORU");
    assert_eq!(e["errorLocation"], "OBX-5");
    assert!(e["error"].as_str().unwrap().contains("not a number"), "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    let one: Value = app
        .client
        .get(admin(&format!("messages/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["raw"], bad.as_str());

    // replayed as it is: still wrong, still queued, one more attempt
    let replay = |body: Option<String>| {
        let req = app.client.post(admin(&format!("messages/{id}/replay")));
        let req = match body {
            Some(b) => req.body(b),
            None => req,
        };
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(replay(None).await["code"], "AE");
    let again: Value = app
        .client
        .get(admin(&format!("messages/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["message"]["attempts"], 2);
    assert_eq!(again["message"]["status"], "failed");
    // corrected by a person: applied, and the queue entry is closed
    let fixed = replay(Some(bad.replace("||high|", "||5.9|"))).await;
    assert_eq!(fixed["code"], "AA", "{fixed}");
    assert_eq!(patient(&app, "MRN950").await.len(), 1);
    let queue: Value = app
        .client
        .get(admin("messages?status=failed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(queue["messages"].as_array().unwrap().is_empty(), "{queue}");

    // the command line: a message still wrong fails the run (exit 1), its correction passes
    let bad2 = oru("X2", "MRN951", "F", "low");
    assert_eq!(mllp.send(&bad2).await.code(), "AE");
    let dir = app.dir.path().to_path_buf();
    let run = |args: Vec<String>| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_emrsync"))
                .arg("replay")
                .arg("--data-dir")
                .arg(&dir)
                .args(args)
                .env("EMRSYNC_LOG", "warn")
                .output()
                .unwrap()
        })
    };
    let out = run(vec!["--all-failed".into()]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(" AE ") && stdout.contains("1 replayed"),
        "{stdout}"
    );
    let id2 = stdout.split_whitespace().next().unwrap().to_string();
    let file = dir.join("fixed.hl7");
    std::fs::write(&file, bad2.replace("||low|", "||3.3|")).unwrap();
    let out = run(vec![
        id2,
        "--message-file".into(),
        file.display().to_string(),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" AA "), "{stdout}");
    assert_eq!(patient(&app, "MRN951").await.len(), 1);
}

/// An admission's allergies (AL1), diagnoses (DG1) and next of kin (NK1) become the patient's
/// AllergyIntolerance, the visit's Condition and a RelatedPerson; restated, they are updated.
async fn allergies_diagnoses_and_next_of_kin(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let extra = "AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives~Wheezing|20200101\r\
                 AL1|2|FA|256349002^Peanut^SCT|MI\r\
                 DG1|1||J18.9^Pneumonia, unspecified organism^I10||20261125113000|A\r\
                 NK1|1|Everyman^Eve|SPO^Spouse^HL70063|12 Main St^^Springfield^IL^62701^USA^H|^PRN^PH^^1^217^5550000\r";
    let msg = format!("{}{extra}", adt("A01", "K1", "MRN990", "V990", "Kin"));
    let ack = mllp.send(&msg).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let pid = patient(&app, "MRN990").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let allergies = found(
        &app.get(&format!("AllergyIntolerance?patient=Patient/{pid}"))
            .await,
    );
    assert_eq!(allergies.len(), 2);
    let pen = allergies
        .iter()
        .find(|a| a["code"]["coding"][0]["code"] == "70618")
        .unwrap();
    assert_eq!(pen["category"][0], "medication");
    assert_eq!(pen["criticality"], "high");
    assert_eq!(pen["reaction"][0]["manifestation"][1]["text"], "Wheezing");
    assert_eq!(pen["reaction"][0]["severity"], "severe");
    assert_eq!(
        pen["code"]["coding"][0]["system"],
        "http://www.nlm.nih.gov/research/umls/rxnorm"
    );
    let conditions = found(&app.get(&format!("Condition?patient=Patient/{pid}")).await);
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0]["code"]["coding"][0]["code"], "J18.9");
    assert!(
        conditions[0]["encounter"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Encounter/")
    );
    let kin = found(
        &app.get(&format!("RelatedPerson?patient=Patient/{pid}"))
            .await,
    );
    assert_eq!(kin.len(), 1);
    assert_eq!(kin[0]["name"][0]["given"][0], "Eve");
    assert_eq!(kin[0]["relationship"][0]["coding"][0]["code"], "SPO");
    // an update restating the allergy with a new reaction: the same resource, a new version
    let msg = format!(
        "{}{}",
        adt("A08", "K2", "MRN990", "V990", "Kin"),
        extra.replace("Hives~Wheezing", "Anaphylaxis")
    );
    assert_eq!(mllp.send(&msg).await.code(), "AA");
    let allergies = found(
        &app.get(&format!("AllergyIntolerance?patient=Patient/{pid}"))
            .await,
    );
    assert_eq!(allergies.len(), 2);
    let pen = allergies
        .iter()
        .find(|a| a["code"]["coding"][0]["code"] == "70618")
        .unwrap();
    assert_eq!(pen["meta"]["versionId"], "2");
    assert_eq!(
        pen["reaction"][0]["manifestation"][0]["text"],
        "Anaphylaxis"
    );
}

crate::on_both_backends_with!(spawn_mllp, allergies_diagnoses_and_next_of_kin);
