//! HL7v2 results (ORU^R01) over a real MLLP socket, and the exception queue: a result and its
//! correction, a lab-result subscriber notified, and messages that could not be applied listed
//! and replayed over the admin API and the command line.

use crate::helpers::{Backend, TestApp};
use crate::hl7v2::{found, patient, spawn_mllp};
use crate::mllp_client::Mllp;
use crate::receiver::{Receiver, focuses};
use crate::subscriptions::subscription;
use diesel::prelude::*;
use emrsync::store::schema::hl7v2_messages;
use serde_json::Value;

/// An ORU^R01 from the lab for patient `mrn`: a basic metabolic panel with a potassium
/// (`status`, `value`), a creatinine given as SN, a culture result as CWE, a two-line comment,
/// and the report as a PDF (ED).
pub fn oru(control: &str, mrn: &str, status: &str, potassium: &str) -> String {
    format!(
        "MSH|^~\\&|LAB|GOOD HEALTH|EMRSYNC|HUB|20261125130000||ORU^R01^ORU_R01|{control}|P|2.5.1\r\
         PID|1||{mrn}^^^GH&1.2.840.114350.1&ISO^MR||Everyman^Adam||19800214|M\r\
         OBR|1|PL-1^EPIC|FL-77^LAB|24323-8^Comprehensive metabolic panel^LN|||20261125123000|||||||||||||||20261125125900|||{status}\r\
         OBX|1|NM|2823-3^Potassium^LN||{potassium}|mmol/L^mmol/L^UCUM|3.5-5.1|H|||{status}|||20261125123000\r\
         OBX|2|SN|2160-0^Creatinine^LN||<^0.5|mg/dL^mg/dL^UCUM|0.7-1.3|L|||{status}\r\
         OBX|3|CWE|625-4^Bacteria identified^LN||27268008^Salmonella^SCT||||||{status}\r\
         OBX|4|TX|48767-8^Comment^LN||First line of the comment||||||{status}\r\
         OBX|5|TX|48767-8^Comment^LN||second line||||||{status}\r\
         OBX|6|ED|||LAB^application^pdf^Base64^JVBERi0xLjQgcmVwb3J0||||||{status}\r"
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
        "the two text lines are one, and the PDF is no result"
    );
    let pdf = &reports[0]["presentedForm"][0];
    assert_eq!(pdf["contentType"], "application/pdf");
    assert_eq!(
        pdf["data"], "JVBERi0xLjQgcmVwb3J0",
        "%PDF-1.4 report, as sent"
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
        .get_result(&mut app.db())
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
    // what the admin API answers a GET with, as the app's (system) client
    let admin_json = |path: String| {
        let req = app.client.get(admin(&path));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };

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

    let queue: Value = admin_json("messages?status=failed".to_string()).await;
    let entries = queue["messages"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{queue}");
    let e = &entries[0];
    assert_eq!(e["controlId"], "X1");
    assert_eq!(e["messageType"], "ORU");
    assert_eq!(e["errorLocation"], "OBX-5");
    assert!(e["error"].as_str().unwrap().contains("not a number"), "{e}");
    // times as instants a person reads, the resources written as a list
    let received = e["receivedAt"].as_str().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(received).is_ok(),
        "{e}"
    );
    assert_eq!(e["resources"], serde_json::json!([]), "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    let one: Value = admin_json(format!("messages/{id}")).await;
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
    let again: Value = admin_json(format!("messages/{id}")).await;
    assert_eq!(again["message"]["attempts"], 2);
    assert_eq!(again["message"]["status"], "failed");
    // corrected by a person: applied, and the queue entry is closed
    let fixed = replay(Some(bad.replace("||high|", "||5.9|"))).await;
    assert_eq!(fixed["code"], "AA", "{fixed}");
    let applied: Value = admin_json("messages?status=applied".to_string()).await;
    let written = applied["messages"][0]["resources"].as_array().unwrap();
    assert!(
        written
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("Observation/")),
        "{applied}"
    );
    assert_eq!(patient(&app, "MRN950").await.len(), 1);
    let queue: Value = admin_json("messages?status=failed".to_string()).await;
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
        stdout.contains(" AE ") && stdout.contains("1 replayed: 0 accepted, 1 refused again"),
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
    assert!(
        stdout.contains(" AA ") && stdout.contains("1 replayed and accepted"),
        "{stdout}"
    );
    assert_eq!(patient(&app, "MRN951").await.len(), 1);
}
