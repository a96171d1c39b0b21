//! HL7v2 over a real MLLP socket: ACK after commit, stable identity, idempotent resends, NAKs
//! that say why, and the server carrying on after bad input.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::mllp_client::{Mllp, frame};
use crate::receiver::Receiver;
use crate::subscriptions::subscription;
use diesel::prelude::*;
use emrsync::store::schema::{hl7v2_messages, outbox, resource_versions};
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

pub fn found(r: &crate::helpers::Resp) -> Vec<Value> {
    r.json()["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect()
}

pub async fn patient(app: &TestApp, mrn: &str) -> Vec<Value> {
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
        .get_result(&mut db)
        .unwrap();
    assert_eq!(status, "applied");
    let versions: i64 = resource_versions::table
        .filter(resource_versions::correlation_id.eq(&correlation))
        .count()
        .get_result(&mut db)
        .unwrap();
    assert_eq!(
        versions, 5,
        "Patient, Encounter, Location, Practitioner and their Provenance"
    );
    let events: i64 = outbox::table
        .filter(outbox::correlation_id.eq(&correlation))
        .count()
        .get_result(&mut db)
        .unwrap();
    assert_eq!(events, 5);
    // the Provenance says who sent what in which message, and what it became
    let provenance = app.get(&format!("Provenance/{correlation}")).await.json();
    let targets: Vec<&str> = provenance["target"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["reference"].as_str().unwrap())
        .collect();
    assert_eq!(targets.len(), 4, "{provenance}");
    assert!(
        targets.contains(&format!("Patient/{pid}/_history/1").as_str()),
        "{targets:?}"
    );
    assert_eq!(
        provenance["agent"][0]["who"]["display"],
        "hl7v2 REG@GOOD HEALTH"
    );
    assert_eq!(provenance["entity"][0]["role"], "source");
    assert_eq!(
        provenance["entity"][0]["what"]["identifier"]["value"],
        "CTRL1"
    );
    assert_eq!(provenance["activity"]["text"], "message - ADT^A01");
    let by_target = found(&app.get(&format!("Provenance?target=Patient/{pid}")).await);
    assert_eq!(by_target.len(), 1);
    assert_eq!(by_target[0]["id"], correlation.as_str());
    let audits = emrsync::store::audit::all(&mut db)
        .unwrap()
        .into_iter()
        .filter(|e| e.correlation_id == correlation)
        .count();
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
        .get_result(&mut app.db())
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
    // (120 records of one name: the MPI's golden records of those it links left out)
    let r = app
        .get("Patient?family=Many&_tag:not=http://emrsync.org/fhir/CodeSystem/mpi|golden-record&_summary=count")
        .await
        .json();
    assert_eq!(r["total"], 120);
}

/// Messages about one patient from several connections at once (two feeds updating the same
/// person): every one is applied, none is lost to the race for the patient's next version.
async fn one_patient_from_many_connections_at_once(app: TestApp) {
    let port = app.mllp.unwrap();
    let (connections, each) = (6, 10);
    let mut tasks = Vec::new();
    for c in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut mllp = Mllp::connect(port).await;
            for i in 0..each {
                let family = format!("Race{c}x{i}");
                let control = format!("R{c}-{i}");
                let ack = mllp
                    .send(&adt("A08", &control, "MRN-RACE", "V-RACE", &family))
                    .await;
                assert_eq!(ack.code(), "AA", "{}", ack.text);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let found = patient(&app, "MRN-RACE").await;
    assert_eq!(found.len(), 1, "one patient, however many feeds");
    let id = found[0]["id"].as_str().unwrap();
    // each message renamed the patient: one version each
    let history = app
        .get(&format!("Patient/{id}/_history?_count=100"))
        .await
        .json();
    assert_eq!(history["total"], connections * each);
    let latest = &history["entry"][0]["resource"];
    assert_eq!(
        latest["meta"]["versionId"],
        (connections * each).to_string()
    );
}

crate::on_both_backends_with!(
    spawn_mllp,
    one_patient_from_many_connections_at_once,
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
    let focus = hook
        .first_event_focuses(10, "the admission's notification")
        .await;
    assert_eq!(focus.len(), 1);
    assert!(focus[0].contains("/Encounter/"), "{focus:?}");
}

/// An admission's allergies (AL1), diagnoses (DG1), next of kin (NK1) and insurance (IN1)
/// become the patient's AllergyIntolerance, the visit's Condition, a RelatedPerson and a
/// Coverage paid by the insurer's Organization; restated, they are updated.
async fn allergies_diagnoses_and_next_of_kin(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let extra = "AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives~Wheezing|20200101\r\
                 AL1|2|FA|256349002^Peanut^SCT|MI\r\
                 DG1|1||J18.9^Pneumonia, unspecified organism^I10||20261125113000|A\r\
                 NK1|1|Everyman^Eve|SPO^Spouse^HL70063|12 Main St^^Springfield^IL^62701^USA^H|^PRN^PH^^1^217^5550000\r\
                 IN1|1|PPO1^Gold PPO|BCBS-IL^^^^NIIP|Blue Cross Blue Shield of Illinois|300 E Randolph St^^Chicago^IL^60601^USA|||GRP-42|Springfield Schools|||20260101|20261231||PPO||SEL|||||||||||||||||||POL-7788\r";
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
    // the IG's standard coding first (v3 RoleCode), the sender's own kept
    let relationship = &kin[0]["relationship"][0]["coding"];
    assert_eq!(relationship[0]["code"], "SPS", "{relationship}");
    assert_eq!(
        relationship[0]["system"],
        "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
    );
    assert_eq!(relationship[1]["code"], "SPO");
    let coverage = found(
        &app.get(&format!("Coverage?beneficiary=Patient/{pid}"))
            .await,
    );
    assert_eq!(coverage.len(), 1);
    let c = &coverage[0];
    assert_eq!(c["status"], "active");
    assert_eq!(c["subscriberId"], "POL-7788");
    assert_eq!(c["relationship"]["coding"][0]["code"], "self");
    assert_eq!(c["period"]["start"], "2026-01-01");
    assert_eq!(c["class"][0]["value"], "PPO1");
    assert_eq!(c["class"][1]["value"], "GRP-42");
    let insurer = app
        .get(c["payor"][0]["reference"].as_str().unwrap())
        .await
        .json();
    assert_eq!(insurer["name"], "Blue Cross Blue Shield of Illinois");
    assert_eq!(insurer["address"][0]["city"], "Chicago");
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
    let coverage = found(
        &app.get(&format!("Coverage?beneficiary=Patient/{pid}"))
            .await,
    );
    assert_eq!(
        coverage.len(),
        1,
        "the insurance restated is the same Coverage"
    );
    assert_eq!(
        coverage[0]["meta"]["versionId"], "1",
        "and unchanged, not rewritten"
    );
    assert_eq!(
        pen["reaction"][0]["manifestation"][0]["text"],
        "Anaphylaxis"
    );
}

/// Enhanced mode: the sender's MSH-15 (accept ACK) and MSH-16 (application ACK) decide
/// which ACKs come back; each reply read here must belong to the message just sent, so a reply
/// sent that should not have been shows up as the next message's.
async fn enhanced_mode_acks_as_the_sender_asks(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let enhanced = |control: &str, accept: &str, application: &str| {
        adt("A04", control, "MRN-ENH", "V-ENH", "Enhanced").replacen(
            "|P|2.5.1\r",
            &format!("|P|2.5.1|||{accept}|{application}\r"),
            1,
        )
    };
    let reply = |a: &crate::mllp_client::Ack| (a.code(), a.field("MSA", 2));
    // AL/AL: the accept ACK (kept), then the application ACK (applied)
    mllp.write_raw(&frame(enhanced("E1", "AL", "AL").as_bytes()))
        .await;
    assert_eq!(reply(&mllp.ack().await), ("CA".into(), "E1".into()));
    assert_eq!(reply(&mllp.ack().await), ("AA".into(), "E1".into()));
    // AL/NE: the accept ACK only; NE/NE: nothing at all
    mllp.write_raw(&frame(enhanced("E2", "AL", "NE").as_bytes()))
        .await;
    assert_eq!(reply(&mllp.ack().await), ("CA".into(), "E2".into()));
    mllp.write_raw(&frame(enhanced("E3", "NE", "NE").as_bytes()))
        .await;
    // ER/ER for a message that fails (no patient identifier): kept, so no accept ACK; the
    // application ACK says AE
    let failing = enhanced("E4", "ER", "ER").replace(
        "MRN-ENH^^^GH&1.2.840.114350.1&ISO^MR~123-45-6789^^^SSA^SS",
        "",
    );
    mllp.write_raw(&frame(failing.as_bytes())).await;
    let ae = mllp.ack().await;
    assert_eq!(
        reply(&ae),
        ("AE".into(), "E4".into()),
        "E3 was answered: {}",
        ae.text
    );
    assert_eq!(ae.error_location(), "PID-3");
    // AL/SU for an unsupported type: refused (CR, saying why), and no application ACK
    let unknown = enhanced("E5", "AL", "SU").replace("ADT^A04^ADT_A01", "ZZZ^Z01");
    mllp.write_raw(&frame(unknown.as_bytes())).await;
    let cr = mllp.ack().await;
    assert_eq!(reply(&cr), ("CR".into(), "E5".into()));
    assert_eq!(cr.error_code(), "200");
    // MSH-15 and MSH-16 holding no code of table 0155 ask for nothing known: answered in
    // original mode, not with silence the sender would wait on for ever
    let shifted = enhanced("E7", "XX", "Y");
    mllp.write_raw(&frame(shifted.as_bytes())).await;
    assert_eq!(reply(&mllp.ack().await), ("AA".into(), "E7".into()));
    // a message in original mode after all that: its own AA comes next, nothing before it
    assert_eq!(
        reply(
            &mllp
                .send(&adt("A08", "E6", "MRN-ENH", "V-ENH", "Original"))
                .await
        ),
        ("AA".into(), "E6".into())
    );
    // the NE/NE message was applied all the same
    assert_eq!(patient(&app, "MRN-ENH").await[0]["meta"]["versionId"], "2");
}

crate::on_both_backends_with!(
    spawn_mllp,
    allergies_diagnoses_and_next_of_kin,
    enhanced_mode_acks_as_the_sender_asks,
);

/// A connection silent for `--mllp-idle-secs` is closed by the server; one that talks is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed() {
    use tokio::io::AsyncReadExt;
    let app = spawn_with(Backend::Sqlite, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.mllp_idle_secs = 1;
    })
    .await;
    let port = app.mllp.unwrap();
    let mut busy = Mllp::connect(port).await;
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    for i in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let ack = busy
            .send(&adt("A08", &format!("I{i}"), "MRN-IDLE", "V-IDLE", "Busy"))
            .await;
        assert_eq!(ack.code(), "AA");
    }
    // by now (1.8 s) the silent one has been closed: a read sees the end of the stream
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("the server closes the idle connection")
        .unwrap_or(0);
    assert_eq!(n, 0);
}
