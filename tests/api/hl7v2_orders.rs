//! HL7v2 orders, pharmacy, immunizations, scheduling, documents and patient merges over a real
//! MLLP socket: each lands on the resource its business identifier names, and a later message
//! about the same order, appointment or document updates it.

use crate::helpers::{Backend, TestApp};
use crate::hl7v2::{adt, found, patient, spawn_mllp};
use crate::mllp_client::Mllp;
use crate::receiver::Receiver;
use crate::subscriptions::subscription;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

const PID: &str = "PID|1||MRN900^^^GH&1.2.840.114350.1&ISO^MR||Orders^Olive||19700101|F\r";

fn msh(ty: &str, control: &str) -> String {
    format!("MSH|^~\\&|CPOE|GOOD HEALTH|EMRSYNC|HUB|20261125120000||{ty}|{control}|P|2.5.1\r")
}

/// An order for a chest X-ray, placer number `placer`, control code `control_code`.
fn orm(control: &str, placer: &str, control_code: &str) -> String {
    format!(
        "{}{PID}ORC|{control_code}|{placer}^CPOE|||||||20261125115500|||1234^Welby^Marcus^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO\r\
         OBR|1|{placer}^CPOE||36643-5^XR Chest 2 Views^LN|||20261125120000||||||||||||||||||||^^^^^S\r\
         NTE|1||Rule out pneumonia\r\
         DG1|1||J18.9^Pneumonia, unspecified organism^I10\r",
        msh("ORM^O01^ORM_O01", control)
    )
}

async fn only(app: &TestApp, query: &str) -> Value {
    let list = found(&app.get(query).await);
    assert_eq!(list.len(), 1, "{query}: {list:?}");
    list[0].clone()
}

async fn send(mllp: &mut Mllp, message: &str) {
    let ack = mllp.send(message).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
}

/// An order becomes an active ServiceRequest with its requester, reason and note; its
/// cancellation (same placer number) revokes that same ServiceRequest.
async fn an_order_and_its_cancellation(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    send(&mut mllp, &orm("O1", "PL-77", "NW")).await;
    let pid = patient(&app, "MRN900").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sr = only(&app, &format!("ServiceRequest?subject=Patient/{pid}")).await;
    assert_eq!(sr["status"], "active");
    assert_eq!(sr["intent"], "order");
    assert_eq!(sr["priority"], "stat");
    assert_eq!(sr["code"]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(sr["code"]["coding"][0]["code"], "36643-5");
    assert_eq!(sr["identifier"][0]["value"], "PL-77");
    assert_eq!(sr["identifier"][0]["type"]["coding"][0]["code"], "PLAC");
    assert_eq!(sr["authoredOn"], "2026-11-25T11:55:00Z");
    assert_eq!(sr["note"][0]["text"], "Rule out pneumonia");
    let requester = app
        .get(sr["requester"]["reference"].as_str().unwrap())
        .await
        .json();
    assert_eq!(requester["name"][0]["family"], "Welby");
    let reason = app
        .get(sr["reasonReference"][0]["reference"].as_str().unwrap())
        .await
        .json();
    assert_eq!(reason["code"]["coding"][0]["code"], "J18.9");

    send(&mut mllp, &orm("O2", "PL-77", "CA")).await;
    let sr2 = only(&app, &format!("ServiceRequest?subject=Patient/{pid}")).await;
    assert_eq!(sr2["id"], sr["id"], "the cancellation names the same order");
    assert_eq!(sr2["status"], "revoked");
    assert_eq!(sr2["meta"]["versionId"], "2");
}

/// A pharmacy order (RDE) becomes a MedicationRequest with its dose, route and supply; the
/// administration (RAS) of that order points at it.
async fn a_medication_order_and_its_administration(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let rde = format!(
        "{}{PID}ORC|NW|RX-5^CPOE|||||||20261125100000\r\
         RXE|^^^20261125^^R|313782^Acetaminophen 325 MG Oral Tablet^RXNORM|650||mg^milligram^UCUM|TAB|^Take with water|||30|TAB^tablet|2\r\
         RXR|PO^Oral^HL70162\r",
        msh("RDE^O11^RDE_O11", "R1")
    );
    send(&mut mllp, &rde).await;
    let pid = patient(&app, "MRN900").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mr = only(&app, &format!("MedicationRequest?subject=Patient/{pid}")).await;
    assert_eq!(mr["status"], "active");
    assert_eq!(
        mr["medicationCodeableConcept"]["coding"][0]["system"],
        "http://www.nlm.nih.gov/research/umls/rxnorm"
    );
    assert_eq!(
        mr["medicationCodeableConcept"]["coding"][0]["code"],
        "313782"
    );
    let dosage = &mr["dosageInstruction"][0];
    assert_eq!(dosage["text"], "Take with water");
    assert_eq!(dosage["route"]["coding"][0]["code"], "PO");
    assert_eq!(dosage["doseAndRate"][0]["doseQuantity"]["value"], 650);
    assert_eq!(dosage["doseAndRate"][0]["doseQuantity"]["code"], "mg");
    assert_eq!(mr["dispenseRequest"]["quantity"]["value"], 30);
    assert_eq!(mr["dispenseRequest"]["numberOfRepeatsAllowed"], 2);

    let ras = format!(
        "{}{PID}ORC|RE|RX-5^CPOE\r\
         RXA|0|1|20261125130000|20261125130500|313782^Acetaminophen 325 MG Oral Tablet^RXNORM|650|mg^milligram^UCUM|||||||||||||CP\r\
         RXR|PO^Oral^HL70162\r",
        msh("RAS^O17^RAS_O17", "R2")
    );
    send(&mut mllp, &ras).await;
    let given = only(
        &app,
        &format!("MedicationAdministration?subject=Patient/{pid}"),
    )
    .await;
    assert_eq!(given["status"], "completed");
    assert_eq!(
        given["request"]["reference"],
        format!("MedicationRequest/{}", mr["id"].as_str().unwrap())
    );
    assert_eq!(given["effectivePeriod"]["start"], "2026-11-25T13:00:00Z");
    assert_eq!(given["dosage"]["dose"]["value"], 650);
}

/// A vaccination record (VXU) becomes an Immunization; the registry's resend of the same
/// history changes nothing, and a refusal is `not-done`.
async fn a_vaccination_record_resent(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let vxu = |control: &str, completion: &str| {
        format!(
            "{}{PID}ORC|RE||IZ-9^EHR\r\
             RXA|0|1|20261101093000||208^COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose^CVX|0.3|mL^mL^UCUM||00^New record^NIP001|7824^Jackson^Lily|||||EW0150|20270331|PFR^Pfizer, Inc^MVX|00^Parental decision^NIP002||{completion}|A\r\
             RXR|C28161^Intramuscular^NCIT|LD^Left Deltoid^HL70163\r\
             OBX|1|CE|64994-7^Vaccine funding program eligibility^LN|1|V01^Not VFC eligible^HL70064||||||F\r",
            msh("VXU^V04^VXU_V04", control)
        )
    };
    send(&mut mllp, &vxu("V1", "CP")).await;
    send(&mut mllp, &vxu("V2", "CP")).await;
    let pid = patient(&app, "MRN900").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let imm = only(&app, &format!("Immunization?patient=Patient/{pid}")).await;
    assert_eq!(imm["meta"]["versionId"], "1", "the resend changed nothing");
    assert_eq!(imm["status"], "completed");
    assert_eq!(
        imm["vaccineCode"]["coding"][0]["system"],
        "http://hl7.org/fhir/sid/cvx"
    );
    assert_eq!(imm["vaccineCode"]["coding"][0]["code"], "208");
    assert_eq!(imm["occurrenceDateTime"], "2026-11-01T09:30:00Z");
    assert_eq!(imm["primarySource"], true);
    assert_eq!(imm["lotNumber"], "EW0150");
    assert_eq!(imm["expirationDate"], "2027-03-31");
    assert_eq!(imm["manufacturer"]["display"], "Pfizer, Inc");
    assert_eq!(imm["site"]["coding"][0]["code"], "LD");
    assert_eq!(imm["doseQuantity"]["value"], 0.3);
    assert_eq!(imm["programEligibility"][0]["coding"][0]["code"], "V01");
    assert_eq!(imm["performer"][0]["function"]["coding"][0]["code"], "AP");
    // the same vaccination, now recorded as refused
    send(&mut mllp, &vxu("V3", "RE")).await;
    let imm = only(&app, &format!("Immunization?patient=Patient/{pid}")).await;
    assert_eq!(imm["status"], "not-done");
    assert_eq!(imm["statusReason"]["coding"][0]["code"], "00");
}

/// An appointment booked (S12), moved (S13) and cancelled (S15) is one Appointment.
async fn an_appointment_booked_moved_and_cancelled(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let siu = |trigger: &str, control: &str, start: &str, end: &str| {
        format!(
            "{}SCH|P-1^CPOE|F-1^SCHED|||||ROUTINE^Routine follow-up^HL70276|FOLLOWUP^Follow-up^HL70277|||||||||||||||||Booked\r\
             TQ1|||||||{start}|{end}\r\
             NTE|1||Bring the medication list\r\
             {PID}\
             RGS|1\r\
             AIS|1||99213^Office visit^C4\r\
             AIP|1||1234^Welby^Marcus|MD^Physician\r\
             AIL|1||CLINIC^Room 5^^GOOD HEALTH\r",
            msh(&format!("SIU^{trigger}^SIU_S12"), control)
        )
    };
    send(
        &mut mllp,
        &siu("S12", "S1", "20261201090000+0100", "20261201093000+0100"),
    )
    .await;
    let pid = patient(&app, "MRN900").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a = only(&app, &format!("Appointment?patient=Patient/{pid}")).await;
    assert_eq!(a["status"], "booked");
    // SCH-7 the reason, SCH-8 the type
    assert_eq!(a["reasonCode"][0]["coding"][0]["code"], "ROUTINE", "{a}");
    assert_eq!(a["appointmentType"]["coding"][0]["code"], "FOLLOWUP");
    assert_eq!(a["start"], "2026-12-01T09:00:00+01:00");
    assert_eq!(a["end"], "2026-12-01T09:30:00+01:00");
    assert_eq!(a["minutesDuration"], 30);
    assert_eq!(a["comment"], "Bring the medication list");
    assert_eq!(a["serviceType"][0]["coding"][0]["code"], "99213");
    let actors: Vec<&str> = a["participant"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["actor"]["reference"].as_str())
        .collect();
    assert_eq!(actors.len(), 3, "patient, physician and room: {actors:?}");
    assert!(
        actors[0].starts_with("Patient/")
            && actors[1].starts_with("Practitioner/")
            && actors[2].starts_with("Location/")
    );

    send(
        &mut mllp,
        &siu("S13", "S2", "20261202140000+0100", "20261202143000+0100"),
    )
    .await;
    let moved = only(&app, &format!("Appointment?patient=Patient/{pid}")).await;
    assert_eq!(moved["id"], a["id"]);
    assert_eq!(moved["start"], "2026-12-02T14:00:00+01:00");
    let cancel = siu("S15", "S3", "20261202140000+0100", "20261202143000+0100")
        .replace("|||Booked\r", "|||Cancelled\r");
    send(&mut mllp, &cancel).await;
    let cancelled = only(&app, &format!("Appointment?patient=Patient/{pid}")).await;
    assert_eq!(cancelled["id"], a["id"]);
    assert_eq!(cancelled["status"], "cancelled");
}

/// A document (MDM^T02) carries its content: a base64 PDF as it was sent, or text lines as
/// UTF-8 text; a replacement (T10) points at the document it replaces.
async fn documents_with_their_content(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let pdf = b"%PDF-1.4 a discharge summary";
    let mdm = format!(
        "{}EVN|T02|20261125120000\r{PID}\
         TXA|1|DS^Discharge summary^HL70270|AP|20261125115900||||||||DOC-1^NOTES|||||AU\r\
         OBX|1|ED|18842-5^Discharge summary^LN||^application^pdf^Base64^{}||||||F\r",
        msh("MDM^T02^MDM_T02", "D1"),
        STANDARD.encode(pdf)
    );
    send(&mut mllp, &mdm).await;
    let pid = patient(&app, "MRN900").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = only(&app, &format!("DocumentReference?subject=Patient/{pid}")).await;
    assert_eq!(d["status"], "current");
    assert_eq!(d["docStatus"], "final");
    assert_eq!(d["masterIdentifier"]["value"], "DOC-1");
    assert_eq!(d["type"]["coding"][0]["code"], "DS");
    assert_eq!(d["date"], "2026-11-25T11:59:00Z");
    let att = &d["content"][0]["attachment"];
    assert_eq!(att["contentType"], "application/pdf");
    assert_eq!(STANDARD.decode(att["data"].as_str().unwrap()).unwrap(), pdf);

    let text = format!(
        "{}EVN|T10|20261125130000\r{PID}\
         TXA|1|DS^Discharge summary^HL70270|TX|20261125125900||||||||DOC-2^NOTES|DOC-1^NOTES||||AU\r\
         OBX|1|TX|18842-5^Discharge summary^LN||Discharged home.||||||F\r\
         OBX|2|TX|18842-5^Discharge summary^LN||Follow up in 2 weeks.||||||F\r",
        msh("MDM^T10^MDM_T02", "D2")
    );
    send(&mut mllp, &text).await;
    let list = found(
        &app.get(&format!("DocumentReference?subject=Patient/{pid}"))
            .await,
    );
    let d2 = list
        .iter()
        .find(|d| d["masterIdentifier"]["value"] == "DOC-2")
        .expect("the replacement is a document of its own");
    let att = &d2["content"][0]["attachment"];
    assert_eq!(att["contentType"], "text/plain; charset=utf-8");
    assert_eq!(
        STANDARD.decode(att["data"].as_str().unwrap()).unwrap(),
        b"Discharged home.\nFollow up in 2 weeks."
    );
    assert_eq!(d2["relatesTo"][0]["code"], "replaces");
    assert_eq!(
        d2["relatesTo"][0]["target"]["reference"],
        format!("DocumentReference/{}", d["id"].as_str().unwrap())
    );
}

/// A40: the prior patient's visit moves to the survivor; the prior Patient stays, inactive and
/// `replaced-by` the survivor, which `replaces` it; a later update of the survivor keeps that.
async fn a_merge_moves_the_prior_patients_records(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    send(&mut mllp, &adt("A01", "M1", "MRN-OLD", "V-OLD", "Dupont")).await;
    send(&mut mllp, &adt("A01", "M2", "MRN-NEW", "V-NEW", "Dupont")).await;
    let old = patient(&app, "MRN-OLD").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let new = patient(&app, "MRN-NEW").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a40 = "MSH|^~\\&|REG|GOOD HEALTH|EMRSYNC|HUB|20261125140000||ADT^A40^ADT_A39|M3|P|2.5.1\r\
               EVN|A40|20261125140000\r\
               PID|1||MRN-NEW^^^GH&1.2.840.114350.1&ISO^MR||Dupont^Adam||19800214|M\r\
               MRG|MRN-OLD^^^GH&1.2.840.114350.1&ISO^MR\r";
    send(&mut mllp, a40).await;
    let encounters = found(&app.get(&format!("Encounter?patient=Patient/{new}")).await);
    assert_eq!(
        encounters.len(),
        2,
        "the prior patient's visit moved: {encounters:?}"
    );
    assert!(found(&app.get(&format!("Encounter?patient=Patient/{old}")).await).is_empty());
    let prior = app.get(&format!("Patient/{old}")).await.json();
    assert_eq!(prior["active"], false);
    assert_eq!(prior["link"][0]["type"], "replaced-by");
    assert_eq!(
        prior["link"][0]["other"]["reference"],
        format!("Patient/{new}")
    );
    let survivor = app.get(&format!("Patient/{new}")).await.json();
    assert_eq!(survivor["link"][0]["type"], "replaces");
    assert_eq!(
        survivor["link"][0]["other"]["reference"],
        format!("Patient/{old}")
    );
    send(
        &mut mllp,
        &adt("A08", "M4", "MRN-NEW", "V-NEW", "Dupont-Durand"),
    )
    .await;
    let survivor = app.get(&format!("Patient/{new}")).await.json();
    assert_eq!(survivor["name"][0]["family"], "Dupont-Durand");
    assert_eq!(
        survivor["link"][0]["type"], "replaces",
        "an update keeps the merge"
    );
    // a merge naming the survivor as its own prior patient is refused with the reason
    let self_merge = a40
        .replace("|M3|", "|M5|")
        .replace("MRG|MRN-OLD", "MRG|MRN-NEW");
    let ack = mllp.send(&self_merge).await;
    assert_eq!(ack.code(), "AE");
    assert_eq!(ack.error_location(), "MRG-1");
    assert_eq!(ack.error_code(), "103");
}

crate::on_both_backends_with!(
    spawn_mllp,
    an_order_and_its_cancellation,
    a_medication_order_and_its_administration,
    a_vaccination_record_resent,
    an_appointment_booked_moved_and_cancelled,
    documents_with_their_content,
    a_merge_moves_the_prior_patients_records,
);

/// An order placed over MLLP reaches the subscribers of the order-placed topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_over_mllp_notifies_its_subscribers() {
    let app = spawn_mllp(Backend::Sqlite).await;
    let hook = Receiver::start().await;
    app.create(&subscription("order-placed", &[], &hook.url, "id-only"))
        .await;
    hook.wait_until(10, "the handshake", |g| !g.is_empty())
        .await;
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    send(&mut mllp, &orm("N1", "PL-88", "NW")).await;
    let focus = hook
        .first_event_focuses(10, "the order's notification")
        .await;
    assert_eq!(focus.len(), 1);
    assert!(focus[0].contains("/ServiceRequest/"), "{focus:?}");
}
