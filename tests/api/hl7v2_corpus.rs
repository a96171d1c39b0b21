//! Every message of the HL7v2 corpus (`tests/corpus/hl7v2/`, real messages written by other
//! projects) through a real MLLP socket. Well-formed messages of a type we take are ACKed AA
//! and mapped; the key facts of another converter's answer (Microsoft FHIR-Converter, where
//! it has one) are compared; messages of types not mapped yet get an AR that says so;
//! malformed ones get AE or AR. None crashes the server or hangs a connection.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::mllp_client::Mllp;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

pub fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/hl7v2")
}

/// The message types and triggers mapped so far.
fn mapped(msh9: &str) -> bool {
    let mut parts = msh9.split('^');
    let (ty, trigger) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match ty {
        "ADT" => [
            "A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A12", "A13", "A28",
            "A31", "A40",
        ]
        .contains(&trigger),
        "ORU" => trigger == "R01",
        "ORM" => trigger == "O01",
        "OML" => trigger == "O21",
        "RDE" => trigger == "O11",
        "RAS" => trigger == "O17",
        "VXU" => trigger == "V04",
        "SIU" => ["S12", "S13", "S14", "S15", "S17", "S26"].contains(&trigger),
        "MDM" => trigger.len() == 3 && trigger.starts_with('T'),
        _ => false,
    }
}

/// Where our answer differs from Microsoft FHIR-Converter's on purpose, and why.
/// (Their Encounter identifiers also hold PV1-50, the alternate visit id: ours is PV1-19, the
/// visit number, and must be one of theirs.)
const DIFFERENCES: &[(&str, &str, &str)] = &[
    // (message, fact, reason)
    (
        "microsoft-fhir-converter/ADT-A28-01.hl7",
        "encounter",
        "A28 adds a person, not a visit: we write no Encounter from its PV1 (the structure's placeholder)",
    ),
    (
        "microsoft-fhir-converter/ADT-A31-01.hl7",
        "encounter",
        "A31 updates a person, not a visit: we write no Encounter from its PV1",
    ),
    (
        "microsoft-fhir-converter/ADT-A08-02.hl7",
        "encounter.status",
        "an A08 states no visit status: ours is in-progress until PV1-45 (discharge) is set; theirs says planned",
    ),
    // TXA-17 AU is "authenticated" (HL7 table 0271): a document signed off is final
    (
        "microsoft-fhir-converter/MDM-T01-01.hl7",
        "document.docStatus",
        "TXA-17 AU (authenticated): ours final, theirs preliminary",
    ),
    (
        "microsoft-fhir-converter/MDM-T02-01.hl7",
        "document.docStatus",
        "TXA-17 AU (authenticated): ours final, theirs preliminary",
    ),
    (
        "microsoft-fhir-converter/MDM-T02-02.hl7",
        "document.docStatus",
        "TXA-17 AU (authenticated): ours final, theirs preliminary",
    ),
    (
        "microsoft-fhir-converter/ORU-R01-01.hl7",
        "document",
        "an ORU's OBX of type ED (an attached report) is the DiagnosticReport's presentedForm in ours (as the v2-to-FHIR IG maps it), a DocumentReference in theirs",
    ),
];

/// Messages of a type we take that we answer with something other than AA, and why.
const NOT_ACCEPTED: &[(&str, &str, &str)] = &[(
    "python-hl7/rep_sample_hl7.hl7",
    "AE",
    "a parser test's placeholder message (PID-1 is 'Field1'): an ORU^R01 with no OBR, so no result to file",
)];

fn differs_on_purpose(file: &str, fact: &str) -> bool {
    DIFFERENCES
        .iter()
        .any(|(f, what, _)| *f == file && *what == fact)
}

/// The messages of one corpus file: most hold one; some hold several, one after another.
pub fn messages(bytes: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(bytes);
    let starts: Vec<usize> = text
        .match_indices("MSH")
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with(['\r', '\n', '\u{feff}']))
        .map(|(i, _)| i)
        .collect();
    if starts.len() <= 1 || !text.trim_start_matches('\u{feff}').starts_with("MSH") {
        return vec![bytes.to_vec()];
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let e = starts.get(k + 1).copied().unwrap_or(text.len());
            text[s..e].as_bytes().to_vec()
        })
        .collect()
}

/// A server that answers every message with one original-mode ACK (`--mllp-original-acks`):
/// several corpus messages fill MSH-15/16 (NE/NE, AL/NE...) and this test reads one ACK each.
async fn spawn_original(backend: Backend) -> TestApp {
    spawn_with(backend, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.mllp_original_acks = true;
    })
    .await
}

async fn every_corpus_message(app: TestApp) {
    let index = std::fs::read_to_string(corpus().join("index.tsv")).unwrap();
    let facts: Value = serde_json::from_str(
        &std::fs::read_to_string(corpus().join("expected-facts.json")).unwrap(),
    )
    .unwrap();
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let mut compared = 0;
    let mut failures = Vec::new();
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, msh9, class) = (cols[0], cols[2], cols[6]);
        let bytes = std::fs::read(corpus().join(file)).unwrap();
        for (k, message) in messages(&bytes).iter().enumerate() {
            mllp.write_raw(&crate::mllp_client::frame(message)).await;
            let ack = mllp.ack().await;
            let code = ack.code();
            let what = format!("{file} #{k}: {code} {}", ack.text.replace('\r', " / "));
            // (a message of a stream may lack its control id: refused like any such message)
            let control_id = String::from_utf8_lossy(message)
                .split(['\r', '\n'])
                .next()
                .and_then(|msh| msh.split('|').nth(9).map(str::to_string))
                .unwrap_or_default();
            // a file of several messages holds several types: each message's own MSH-9
            let msh9 = String::from_utf8_lossy(message)
                .split(['\r', '\n'])
                .next()
                .and_then(|msh| msh.split('|').nth(8).map(str::to_string))
                .filter(|_| class == "multi")
                .unwrap_or(msh9.to_string());
            let msh9 = msh9.as_str();
            let listed = NOT_ACCEPTED.iter().find(|(f, _, _)| *f == file);
            let ok = match class {
                _ if listed.is_some() => listed.is_some_and(|(_, c, _)| *c == code),
                "malformed" => code == "AR" || code == "AE",
                // batch envelopes (FHS/BHS) are not taken over MLLP: each message in its frame
                "envelope" => code == "AR" && ack.error_code() == "100",
                _ if control_id.is_empty() => code == "AR" && ack.error_code() == "101",
                _ if mapped(msh9) => code == "AA",
                _ => code == "AR" && ["200", "201"].contains(&ack.error_code().as_str()),
            };
            if !ok {
                failures.push(format!("{what} (class {class}, {msh9})"));
            }
        }
        if mapped(msh9)
            && let Some(expected) = facts.get(file)
        {
            compared += 1;
            compare(&app, file, &bytes, expected, &mut failures).await;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compared >= 15, "facts compared for {compared} messages");
    // the server is still answering HTTP and MLLP after all of it
    assert_eq!(app.get("metadata").await.status, 200);
}

/// Our Patient and Encounter for this message (their ids are what our map gives them) against
/// the other answer.
async fn compare(
    app: &TestApp,
    file: &str,
    message: &[u8],
    expected: &Value,
    failures: &mut Vec<String>,
) {
    use emrsync::adapters::hl7v2::{map, message as v2};
    let Some(theirs) = expected["patients"].get(0) else {
        return;
    };
    let ids: BTreeSet<&str> = theirs["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let parsed = v2::parse(&v2::decode(message)).unwrap();
    // the ids this server gives: under its installation's id secret
    let secret: String = {
        use diesel::prelude::*;
        use emrsync::store::schema::installation as i;
        i::table
            .find("hl7v2-id-secret")
            .select(i::value)
            .get_result(&mut app.db())
            .unwrap_or_default()
    };
    let mapped = map::map(&parsed, secret.as_bytes(), Default::default())
        .map(|m| m.resources)
        .unwrap_or_default();
    compare_orders_and_more(app, file, &mapped, expected, failures).await;
    let id_of = |t: &str| mapped.iter().find(|r| r.rtype == t).map(|r| r.id.clone());
    let Some(pid) = id_of("Patient") else {
        failures.push(format!("{file}: no Patient mapped"));
        return;
    };
    let p = app.get(&format!("Patient/{pid}")).await.json();
    let mut check = |fact: &str, same: bool, detail: String| {
        if !same && !differs_on_purpose(file, fact) {
            failures.push(format!("{file}: {fact} differs: {detail}"));
        }
    };
    // the identifiers this message gives (the stored Patient also keeps those of other systems
    // that earlier messages about the patient gave: an empty field says nothing in v2)
    let said = &mapped
        .iter()
        .find(|r| r.rtype == "Patient")
        .map(|r| r.body.clone());
    let given = said
        .as_ref()
        .map(|b| &b["identifier"])
        .unwrap_or(&p["identifier"]);
    for i in given.as_array().into_iter().flatten() {
        let v = i["value"].as_str().unwrap_or("");
        check(
            "patient.identifier",
            ids.contains(v),
            format!("ours {v}, theirs {ids:?}"),
        );
    }
    let families: BTreeSet<&str> = theirs["families"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for n in p["name"].as_array().into_iter().flatten() {
        if let Some(f) = n["family"].as_str() {
            check(
                "patient.family",
                families.contains(f),
                format!("ours {f}, theirs {families:?}"),
            );
        }
    }
    check(
        "patient.birthDate",
        p.get("birthDate") == theirs.get("birthDate").filter(|v| !v.is_null()),
        format!(
            "ours {:?}, theirs {:?}",
            p.get("birthDate"),
            theirs.get("birthDate")
        ),
    );
    check(
        "patient.gender",
        p.get("gender") == theirs.get("gender").filter(|v| !v.is_null()),
        format!(
            "ours {:?}, theirs {:?}",
            p.get("gender"),
            theirs.get("gender")
        ),
    );
    // A result (ORU) names its visit in PV1, and the other converter writes an Encounter from
    // it; ours leaves visits to the ADT feed, which says where the visit stands (a result's PV1
    // would otherwise reset a discharged visit's status). So visits are compared for ADT only.
    if parsed.header().message_type != "ADT" {
        return;
    }
    let Some(their_enc) = expected["encounters"].get(0) else {
        return;
    };
    let visits: BTreeSet<&str> = their_enc["visit"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let Some(eid) = id_of("Encounter") else {
        check("encounter", false, "none mapped".into());
        return;
    };
    let e = app.get(&format!("Encounter/{eid}")).await.json();
    check(
        "encounter.class",
        e["class"]["code"] == their_enc["class"],
        format!("ours {}, theirs {}", e["class"]["code"], their_enc["class"]),
    );
    check(
        "encounter.status",
        e["status"] == their_enc["status"],
        format!("ours {}, theirs {}", e["status"], their_enc["status"]),
    );
    let v = e["identifier"][0]["value"].as_str().unwrap_or("");
    check(
        "encounter.visit",
        visits.is_empty() || visits.contains(v),
        format!("ours {v:?}, theirs {visits:?}"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_message_over_mllp_sqlite() {
    every_corpus_message(spawn_original(Backend::Sqlite).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_message_over_mllp_postgres() {
    every_corpus_message(spawn_original(Backend::Postgres).await).await
}

/// The python-hl7 package's `mllp_send` (an MLLP client written by others) sends the corpus's
/// well-formed messages of the types we map in one stream, as an outside interface would: each gets
/// an AA, printed by the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hl7_mllp_send_delivers_the_corpus() {
    let app = spawn_original(Backend::Sqlite).await;
    let python = std::env::var("EMRSYNC_TEST_PYTHON").expect(
        "EMRSYNC_TEST_PYTHON is not set: run the suite with scripts/test, which makes the venv",
    );
    let mllp_send = std::path::Path::new(&python).with_file_name("mllp_send");
    let index = std::fs::read_to_string(corpus().join("index.tsv")).unwrap();
    let mut stream = Vec::new();
    let mut sent = 0;
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, msh9, class) = (cols[0], cols[2], cols[6]);
        if class != "ok" || !mapped(msh9) || NOT_ACCEPTED.iter().any(|(f, _, _)| *f == file) {
            continue;
        }
        for m in messages(&std::fs::read(corpus().join(file)).unwrap()) {
            stream.extend(crate::mllp_client::frame(&m));
            sent += 1;
        }
    }
    assert!(sent >= 15, "{sent} messages");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.hl7");
    std::fs::write(&path, &stream).unwrap();
    let port = app.mllp.unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(mllp_send)
            .args(["--port", &port, "--file"])
            .arg(&path)
            .arg("127.0.0.1")
            .output()
            .expect("mllp_send runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let accepted = stdout.matches("MSA|AA|").count();
    assert_eq!(accepted, sent, "every message ACKed AA:\n{stdout}");
}

/// The codes of a CodeableConcept.
fn codes(cc: &Value) -> BTreeSet<String> {
    cc["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["code"].as_str().map(str::to_string))
        .collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// The same instant, whatever the zone each is written in.
fn same_instant(a: &Value, b: &Value) -> bool {
    let t = |v: &Value| {
        v.as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    t(a).is_some() && t(a) == t(b)
}

/// Orders, medication requests, immunizations, appointments and documents against the other
/// answer's: each of theirs is matched to ours by a shared identifier or code, then compared.
async fn compare_orders_and_more(
    app: &TestApp,
    file: &str,
    mapped: &[emrsync::adapters::hl7v2::map::Resource],
    expected: &Value,
    failures: &mut Vec<String>,
) {
    let mut ours: std::collections::BTreeMap<&str, Vec<Value>> = Default::default();
    for r in mapped {
        if [
            "ServiceRequest",
            "MedicationRequest",
            "Immunization",
            "Appointment",
            "DocumentReference",
        ]
        .contains(&r.rtype)
        {
            let v = app.get(&format!("{}/{}", r.rtype, r.id)).await.json();
            ours.entry(r.rtype).or_default().push(v);
        }
    }
    let mut check = |fact: &str, same: bool, detail: String| {
        if !same && !differs_on_purpose(file, fact) {
            failures.push(format!("{file}: {fact} differs: {detail}"));
        }
    };
    let theirs = |key: &str| expected[key].as_array().cloned().unwrap_or_default();
    // an order is matched by an identifier (placer or filler number), else by its code
    for t in theirs("service_requests") {
        let Some(list) = ours.get("ServiceRequest") else {
            break; // the other converter makes orders of more messages than ours does
        };
        let (ids, cs) = (strings(&t["identifiers"]), strings(&t["codes"]));
        let found = list
            .iter()
            .find(|o| {
                o["identifier"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|i| i["value"].as_str().is_some_and(|v| ids.contains(v)))
            })
            .or_else(|| list.iter().find(|o| !codes(&o["code"]).is_disjoint(&cs)));
        let Some(o) = found else {
            if !cs.is_empty() {
                check(
                    "service_request",
                    false,
                    format!("theirs {t} has no match in ours"),
                );
            }
            continue;
        };
        check(
            "service_request.status",
            o["status"] == t["status"],
            format!("ours {}, theirs {}", o["status"], t["status"]),
        );
        check(
            "service_request.code",
            cs.is_empty() || !codes(&o["code"]).is_disjoint(&cs),
            format!("ours {:?}, theirs {cs:?}", codes(&o["code"])),
        );
    }
    for o in ours.get("MedicationRequest").into_iter().flatten() {
        let mine = codes(&o["medicationCodeableConcept"]);
        let t = theirs("medication_requests")
            .into_iter()
            .find(|t| !strings(&t["codes"]).is_disjoint(&mine));
        check(
            "medication_request",
            t.as_ref().is_some_and(|t| t["status"] == o["status"]),
            format!(
                "ours {mine:?} {}, theirs {:?}",
                o["status"],
                theirs("medication_requests")
            ),
        );
    }
    for t in theirs("immunizations") {
        let cs = strings(&t["codes"]);
        let found = ours.get("Immunization").into_iter().flatten().find(|o| {
            !codes(&o["vaccineCode"]).is_disjoint(&cs)
                && o["occurrenceDateTime"].as_str().unwrap_or("").get(..10) == t["date"].as_str()
        });
        let Some(o) = found else {
            check(
                "immunization",
                false,
                format!("theirs {t} has no match in ours"),
            );
            continue;
        };
        check(
            "immunization.status",
            o["status"] == t["status"],
            format!("ours {}, theirs {}", o["status"], t["status"]),
        );
        check(
            "immunization.lot",
            t["lot"].is_null() || o["lotNumber"] == t["lot"],
            format!("ours {}, theirs {}", o["lotNumber"], t["lot"]),
        );
    }
    for t in theirs("appointments") {
        let Some(o) = ours.get("Appointment").and_then(|l| l.first()) else {
            check("appointment", false, "none mapped".into());
            continue;
        };
        check(
            "appointment.status",
            o["status"] == t["status"],
            format!("ours {}, theirs {}", o["status"], t["status"]),
        );
        for k in ["start", "end"] {
            check(
                &format!("appointment.{k}"),
                same_instant(&o[k], &t[k]),
                format!("ours {}, theirs {}", o[k], t[k]),
            );
        }
        let mine: BTreeSet<String> = o["identifier"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["value"].as_str().map(str::to_string))
            .collect();
        check(
            "appointment.identifier",
            mine == strings(&t["identifiers"]),
            format!("ours {mine:?}, theirs {}", t["identifiers"]),
        );
    }
    for t in theirs("documents")
        .into_iter()
        .filter(|t| !t["number"].is_null())
    {
        let Some(o) = ours.get("DocumentReference").and_then(|l| l.first()) else {
            check("document", false, "none mapped".into());
            continue;
        };
        check(
            "document.status",
            o["status"] == t["status"],
            format!("ours {}, theirs {}", o["status"], t["status"]),
        );
        check(
            "document.docStatus",
            o["docStatus"] == t["docStatus"],
            format!("ours {}, theirs {}", o["docStatus"], t["docStatus"]),
        );
        check(
            "document.number",
            o["masterIdentifier"]["value"] == t["number"],
            format!(
                "ours {}, theirs {}",
                o["masterIdentifier"]["value"], t["number"]
            ),
        );
        check(
            "document.type",
            codes(&o["type"]) == strings(&t["types"]),
            format!("ours {:?}, theirs {}", codes(&o["type"]), t["types"]),
        );
    }
}
