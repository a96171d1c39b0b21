//! What the v2-to-FHIR IG's tables say a segment becomes, as a client of the store reads it:
//! code maps from the IG's tables, procedures, the patient's observations in ADT, specimens,
//! notes, a report's order, document details and richer names. Messages written for these
//! tests from the IG's segment tables.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::hl7v2::found;
use crate::mllp_client::Mllp;
use serde_json::Value;

async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |s| s.mllp = Some("127.0.0.1:0".into())).await
}

const MSH: &str = "MSH|^~\\&|REG|GOOD HEALTH|EMRSYNC|HUB|20261125120000||";
const MRN: &str = "^^^GH&1.2.840.114350.1&ISO^MR";

async fn send(app: &TestApp, message: &str) -> String {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp.send(message).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    ack.text
}

async fn only(app: &TestApp, query: &str) -> Value {
    let list = found(&app.get(query).await);
    assert_eq!(list.len(), 1, "{query}: {list:?}");
    list[0].clone()
}

async fn an_admission_carries_codes_procedures_and_measurements(app: TestApp) {
    let message = format!(
        "{MSH}ADT^A01^ADT_A01|IG-ADT-1|P|2.5.1\r\
         EVN|A01|20261125120000\r\
         PID|1||IG-MRN-1{MRN}||Ortiz^Ana^Lucia^^^^L^^^^^20200101^^RN||19800214|F|Ruiz^Ana^^^^^A||1 Elm St^^Springfield^IL^62701|SANGAMON||||U||||||||||MEX^Mexico^ISO3166||MEX^Mexico^ISO3166\r\
         PV1|1|R|4W^401^B^GOOD HEALTH|||3E^301^A^GOOD HEALTH|1234^Welby^Marcus^James^III^Dr^MD^^NPI&2.16.840.1.113883.4.6&ISO^L^^^NPI^^^^^^^^FACP|||||||||VIP^Very important person^HL70099|||IG-V-1^^^GH&1.2.840.114350.1&ISO^VN||||||||||||||||||HOME&Home\r\
         OBX|1|NM|8302-2^Body height^LN||170|cm^cm^UCUM|||||F\r\
         OBX|2|NM|29463-7^Body weight^LN||abc|kg^kg^UCUM|||||F\r\
         AL1|1|AA|227037002^Fish^SCT|MO|Hives|20150101\r\
         NK1|1|Ortiz^Luis|BRO^Brother^HL70063|||||20200101|||||||M|19780301||||||||||||||Reyes^Rita|^WPN^PH^^1^217^5550199\r\
         DG1|1||K80.20^^I10|Calculus of gallbladder|20261119080000|||||||||||5555^Diag^Dora||||DX-77^GH\r\
         PR1|1||0FT44ZZ^Laparoscopic cholecystectomy^ICD10PCS|Gallbladder removal|202611200930||95|7777^Sleep^Sam|||8888^Cutter^Cal||||K80.20^Calculus of gallbladder^I10||||PROC-1^GH\r\
         IN1|1|PPO1^Gold PPO|BCBS-IL^^^^NIIP|Blue Cross Blue Shield of Illinois|||||||||||||SEL|||||||||||||||||||POL-1|||||||||||||XYZ123456^^^BCBS&2.16.840.1.113883.3.9&ISO\r"
    );
    let ack = send(&app, &message).await;
    // the unreadable weight is left out with a warning, the rest of the visit goes on
    assert!(ack.contains("OBX^2^5"), "{ack}");
    let patient = only(&app, "Patient?identifier=IG-MRN-1").await;
    let pid = patient["id"].as_str().unwrap();
    // the IG's map: v2 U (unknown) is the null flavour, not v3 U (unmarried); the sender's kept
    let marital = &patient["maritalStatus"]["coding"];
    assert_eq!(marital[0]["code"], "UNK", "{patient}");
    assert_eq!(marital[1]["code"], "U");
    // middle name, credentials (XPN-14) and the name's period (XPN-12)
    let name = &patient["name"][0];
    assert_eq!(name["given"], serde_json::json!(["Ana", "Lucia"]), "{name}");
    assert_eq!(name["suffix"], serde_json::json!(["RN"]), "{name}");
    assert_eq!(name["period"]["start"], "2020-01-01", "{name}");
    // the alias (PID-9), the county (PID-12), citizenship and nationality (PID-26, PID-28)
    assert_eq!(patient["name"][1]["family"], "Ruiz", "{patient}");
    assert_eq!(patient["address"][0]["district"], "SANGAMON");
    let urls: Vec<&str> = patient["extension"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["url"].as_str())
        .collect();
    for url in ["patient-citizenship", "patient-nationality"] {
        assert!(urls.iter().any(|u| u.ends_with(url)), "{url}: {urls:?}");
    }

    // a recurring patient is table 0004's R, as the IG maps it, not an ambulatory visit
    let visit = only(&app, "Encounter?identifier=IG-V-1").await;
    assert_eq!(visit["class"]["code"], "R", "{visit}");
    assert_eq!(
        visit["class"]["system"],
        "http://terminology.hl7.org/CodeSystem/v2-0004"
    );
    // where the patient is and was; a VIP's courtesies
    let statuses: Vec<&str> = visit["location"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["status"].as_str())
        .collect();
    assert_eq!(statuses, ["active", "completed"], "{visit}");
    assert_eq!(
        visit["hospitalization"]["specialCourtesy"][0]["coding"][0]["code"],
        "VIP"
    );
    assert_eq!(
        visit["hospitalization"]["destination"]["display"], "Home",
        "{visit}"
    );
    let attending = visit["participant"][0]["individual"]["reference"]
        .as_str()
        .unwrap();
    let doctor = app.get(&format!("/{attending}")).await.json();
    let name = &doctor["name"][0];
    assert_eq!(
        name["given"],
        serde_json::json!(["Marcus", "James"]),
        "{doctor}"
    );
    assert_eq!(name["suffix"], serde_json::json!(["III", "MD", "FACP"]));
    assert_eq!(doctor["identifier"][0]["type"]["coding"][0]["code"], "NPI");

    // height from the ADT feed, without a laboratory category
    let height = only(
        &app,
        &format!("Observation?subject=Patient/{pid}&code=8302-2"),
    )
    .await;
    assert_eq!(height["valueQuantity"]["value"], 170);
    assert!(height.get("category").is_none(), "{height}");

    // AA is an animal allergen: biologic, as the IG maps it; MO has no criticality there
    let allergy = only(&app, &format!("AllergyIntolerance?patient=Patient/{pid}")).await;
    assert_eq!(allergy["category"][0], "biologic", "{allergy}");
    assert!(allergy.get("criticality").is_none(), "{allergy}");
    assert_eq!(allergy["reaction"][0]["severity"], "moderate");
    assert_eq!(allergy["onsetDateTime"], "2015-01-01");

    let procedure = only(&app, &format!("Procedure?subject=Patient/{pid}")).await;
    assert_eq!(procedure["code"]["coding"][0]["code"], "0FT44ZZ");
    assert_eq!(procedure["code"]["text"], "Laparoscopic cholecystectomy");
    assert_eq!(
        procedure["performedPeriod"]["start"],
        "2026-11-20T09:30:00Z"
    );
    assert_eq!(procedure["performedPeriod"]["end"], "2026-11-20T11:05:00Z");
    assert_eq!(procedure["identifier"][0]["value"], "PROC-1");
    assert_eq!(procedure["reasonCode"][0]["coding"][0]["code"], "K80.20");
    assert_eq!(
        procedure["encounter"]["reference"],
        format!("Encounter/{}", visit["id"].as_str().unwrap())
    );
    let functions: Vec<&str> = procedure["performer"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["function"]["coding"][0]["code"].as_str())
        .collect();
    assert_eq!(functions, ["88189002", "304292004"], "{procedure}");

    // next of kin: the period, sex, birth date, and the contact person's name and phone
    let kin = only(&app, &format!("RelatedPerson?patient=Patient/{pid}")).await;
    assert_eq!(kin["period"]["start"], "2020-01-01", "{kin}");
    assert_eq!(kin["gender"], "male");
    assert_eq!(kin["birthDate"], "1978-03-01");
    assert_eq!(kin["name"][1]["family"], "Reyes");
    assert_eq!(kin["telecom"][0]["value"], "+1 217 5550199");
    // the diagnosis: its description as the code's text, its time as the onset, its id
    let diagnosis = only(&app, &format!("Condition?subject=Patient/{pid}")).await;
    assert_eq!(
        diagnosis["code"]["text"], "Calculus of gallbladder",
        "{diagnosis}"
    );
    assert_eq!(diagnosis["onsetDateTime"], "2026-11-19T08:00:00Z");
    assert_eq!(diagnosis["identifier"][0]["value"], "DX-77");
    let asserter = diagnosis["asserter"]["reference"].as_str().unwrap();
    let dora = app.get(&format!("/{asserter}")).await.json();
    assert_eq!(dora["name"][0]["family"], "Diag", "{dora}");

    // the insured's id with the payer (IN1-49)
    let coverage = only(&app, &format!("Coverage?beneficiary=Patient/{pid}")).await;
    assert_eq!(coverage["subscriberId"], "XYZ123456", "{coverage}");
    let plan = coverage["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["value"] == "PPO1");
    assert!(plan, "the health plan's id: {coverage}");
    assert_eq!(
        coverage["extension"][0]["valueIdentifier"]["system"],
        "urn:oid:2.16.840.1.113883.3.9"
    );
}

async fn a_result_names_its_order_its_specimen_and_its_notes(app: TestApp) {
    let order = format!(
        "{MSH}ORM^O01^ORM_O01|IG-ORM-2|P|2.5.1\r\
         PID|1||IG-MRN-2{MRN}||Ng^Bo||19700101|M\r\
         ORC|NW|IG-PL-2^CPOE||IG-GRP-2^CPOE|||||||||||||||||||||||||I^Inpatient^HL70482\r\
         TQ1|1|2^tests|||||20261125080000|20261125090000|||Before breakfast\r\
         OBR|1|IG-PL-2^CPOE||2345-7^Glucose^LN|||||||G|||||||||||||||||||||||||||||||||||FASTING^Fasting^L\r"
    );
    send(&app, &order).await;
    let result = format!(
        "{MSH}ORU^R01^ORU_R01|IG-ORU-2|P|2.5.1\r\
         PID|1||IG-MRN-2{MRN}||Ng^Bo||19700101|M\r\
         ORC|RE|IG-PL-2^CPOE|IG-FL-2^LAB|IG-GRP-2^CPOE\r\
         OBR|1||IG-FL-2^LAB|2345-7^Glucose^LN|||20261125083000|20261125083500||||||||||||||20261125100000||CH|F\r\
         OBX|1|NM|2345-7^Glucose^LN||95|mg/dL^mg/dL^UCUM|70-99|N|||F|||20261125083000||4321^Tech^Tina|HEXOKINASE^Hexokinase method^L|ANALYZER-7^LAB|20261125084000||OBS-9^LAB||GOOD HEALTH LAB^^^^^CLIA&2.16.840.1.113883.4.7&ISO^XX^^^05D1234567|1 Lab Way^^Springfield^IL^62701\r\
         NTE|1||Fasting sample||^Nurse^Nina|20261125090000\r\
         SPM|1|IG-SP-P2&CPOE^IG-SP-F2&LAB|IG-SP-P1&CPOE^IG-SP-F1&LAB|119297000^Blood specimen^SCT||||||||5^mL&mL&UCUM||Slightly haemolysed|||20261125082000|20261125084500||Y\r"
    );
    send(&app, &result).await;
    let request = only(&app, "ServiceRequest?identifier=IG-PL-2").await;
    // the order's requisition, when, how many, reflex intent, details and type
    assert_eq!(request["requisition"]["value"], "IG-GRP-2", "{request}");
    assert_eq!(request["occurrencePeriod"]["start"], "2026-11-25T08:00:00Z");
    assert_eq!(request["occurrencePeriod"]["end"], "2026-11-25T09:00:00Z");
    assert_eq!(request["quantityQuantity"]["value"], 2);
    assert_eq!(request["note"][0]["text"], "Before breakfast");
    assert_eq!(request["intent"], "reflex-order");
    assert_eq!(request["orderDetail"][0]["coding"][0]["code"], "FASTING");
    assert_eq!(request["locationCode"][0]["coding"][0]["code"], "I");
    let report = only(&app, "DiagnosticReport?identifier=IG-FL-2").await;
    // the placer number (from the ORC) names the order the report answers
    assert_eq!(
        report["basedOn"][0]["reference"],
        format!("ServiceRequest/{}", request["id"].as_str().unwrap()),
        "{report}"
    );
    let placer: Vec<&Value> = report["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"]["coding"][0]["code"] == "PLAC")
        .collect();
    assert_eq!(placer[0]["value"], "IG-PL-2");
    let group = report["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["type"]["coding"][0]["code"] == "PGN" && i["value"] == "IG-GRP-2");
    assert!(group, "the placer group number: {report}");
    assert_eq!(report["category"][0]["coding"][0]["code"], "CH");
    assert_eq!(report["effectivePeriod"]["end"], "2026-11-25T08:35:00Z");

    let specimen = report["specimen"][0]["reference"].as_str().unwrap();
    let specimen = app.get(&format!("/{specimen}")).await.json();
    assert_eq!(specimen["type"]["coding"][0]["code"], "119297000");
    assert_eq!(
        specimen["collection"]["collectedDateTime"],
        "2026-11-25T08:20:00Z"
    );
    assert_eq!(specimen["collection"]["quantity"]["value"], 5);
    assert_eq!(specimen["receivedTime"], "2026-11-25T08:45:00Z");
    assert_eq!(specimen["status"], "available");
    assert_eq!(specimen["note"][0]["text"], "Slightly haemolysed");
    assert_eq!(specimen["parent"][0]["identifier"]["value"], "IG-SP-F1");

    let glucose = app
        .get(&format!(
            "/{}",
            report["result"][0]["reference"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(glucose["specimen"], report["specimen"][0], "{glucose}");
    assert_eq!(glucose["note"][0]["text"], "Fasting sample");
    assert_eq!(glucose["note"][0]["time"], "2026-11-25T09:00:00Z");
    assert_eq!(glucose["note"][0]["authorString"], "Nina Nurse");
    // who and how: the method, the analysis time, the observer and the performing laboratory
    assert_eq!(glucose["method"]["coding"][0]["code"], "HEXOKINASE");
    assert_eq!(glucose["identifier"][0]["value"], "OBS-9");
    assert_eq!(glucose["device"]["identifier"]["value"], "ANALYZER-7");
    assert_eq!(
        glucose["extension"][0]["valueDateTime"],
        "2026-11-25T08:40:00Z"
    );
    let performers: Vec<&str> = glucose["performer"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["reference"].as_str())
        .collect();
    assert_eq!(performers.len(), 2, "{glucose}");
    let lab = app.get(&format!("/{}", performers[1])).await.json();
    assert_eq!(lab["name"], "GOOD HEALTH LAB", "{lab}");
    assert_eq!(lab["identifier"][0]["value"], "05D1234567");
    assert_eq!(
        lab["identifier"][0]["system"],
        "urn:oid:2.16.840.1.113883.4.7"
    );
}

async fn a_document_carries_its_confidentiality_and_authenticator(app: TestApp) {
    let message = format!(
        "{MSH}MDM^T02^MDM_T02|IG-MDM-3|P|2.5.1\r\
         EVN|T02|20261125120000\r\
         PID|1||IG-MRN-3{MRN}||Kim^Jo||19700101|F\r\
         PV1|1|O\r\
         TXA|1|DS^Discharge summary^HL70270|TX|20261125115900|||||1234^Welby^Marcus|5678^Quinn^Mia||IG-DOC-3^NOTES||||ds-3.txt|AU|R|||||||Discharge after cholecystectomy\r\
         OBX|1|TX|||Discharged home in good condition.||||||F\r"
    );
    send(&app, &message).await;
    let doc = only(&app, "DocumentReference?identifier=IG-DOC-3").await;
    let label = &doc["securityLabel"][0]["coding"][0];
    assert_eq!(label["code"], "R", "{doc}");
    assert_eq!(
        label["system"],
        "http://terminology.hl7.org/CodeSystem/v2-0272"
    );
    assert_eq!(doc["description"], "Discharge after cholecystectomy");
    let authenticator = doc["authenticator"]["reference"].as_str().unwrap();
    let mia = app.get(&format!("/{authenticator}")).await.json();
    assert_eq!(mia["name"][0]["family"], "Quinn", "{mia}");
}

/// An ADT event of `trigger` for patient IG-MRN-4 in `bed`, with no visit number or time.
fn unnumbered(trigger: &str, control: &str, bed: &str, more: &str) -> String {
    format!(
        "{MSH}ADT^{trigger}^ADT_A01|{control}|P|2.5.1\r\
         EVN|{trigger}|20261125120000\r\
         PID|1||IG-MRN-4{MRN}||Lund^Per||19700101|M\r\
         PV1|1|I|4W^{bed}^A^GOOD HEALTH\r{more}"
    )
}

async fn a_visit_without_a_number_is_the_patient_s_open_one(app: TestApp) {
    send(&app, &unnumbered("A01", "IG-V4-1", "401", "")).await;
    let patient = only(&app, "Patient?identifier=IG-MRN-4").await;
    let visits = format!(
        "Encounter?subject=Patient/{}",
        patient["id"].as_str().unwrap()
    );
    let admitted = only(&app, &visits).await;
    // a transfer and an update with a diagnosis: the same visit, not two more
    send(&app, &unnumbered("A02", "IG-V4-2", "402", "")).await;
    let dg1 = "DG1|1||J18.9^Pneumonia, unspecified organism^I10\r";
    send(&app, &unnumbered("A08", "IG-V4-3", "402", dg1)).await;
    // said again: still one diagnosis of the one visit
    send(&app, &unnumbered("A08", "IG-V4-3b", "402", dg1)).await;
    let moved = only(&app, &visits).await;
    assert_eq!(moved["id"], admitted["id"]);
    assert!(
        moved["location"][0]["location"]["display"]
            .as_str()
            .unwrap()
            .contains("402"),
        "{moved}"
    );
    let diagnosis = only(&app, "Condition?code=J18.9").await;
    assert_eq!(
        diagnosis["encounter"]["reference"],
        format!("Encounter/{}", admitted["id"].as_str().unwrap())
    );
    send(&app, &unnumbered("A03", "IG-V4-4", "402", "")).await;
    assert_eq!(only(&app, &visits).await["status"], "finished");
    // once discharged, the next admission is a visit of its own
    send(&app, &unnumbered("A01", "IG-V4-5", "403", "")).await;
    let all = found(&app.get(&visits).await);
    assert_eq!(all.len(), 2, "{all:?}");
}

async fn a_thinner_visit_message_keeps_what_it_does_not_say(app: TestApp) {
    let visit = |control: &str, pv1: &str| {
        format!(
            "{MSH}ADT^A08^ADT_A01|{control}|P|2.5.1\r\
             EVN|A08|20261125120000\r\
             PID|1||IG-MRN-5{MRN}||Berg^Eva||19700101|F\r\
             {pv1}\r"
        )
    };
    let full = "PV1|1|I|4W^401^A^GOOD HEALTH|E|||1234^Welby^Marcus|||MED||||7|||||IG-V-5^^^GH&1.2.840.114350.1&ISO^VN|||||||||||||||||||||||||20261125113000";
    send(&app, &visit("IG-V5-1", full)).await;
    let stored = only(&app, "Encounter?identifier=IG-V-5").await;
    assert_eq!(stored["class"]["code"], "IMP");
    // a message naming the visit by its number alone: the rest is as the ADT feed wrote it
    let thin = "PV1|1||||||||||||||||||IG-V-5^^^GH&1.2.840.114350.1&ISO^VN";
    send(&app, &visit("IG-V5-2", thin)).await;
    let kept = only(&app, "Encounter?identifier=IG-V-5").await;
    for element in [
        "class",
        "location",
        "participant",
        "type",
        "serviceType",
        "period",
    ] {
        assert_eq!(kept[element], stored[element], "{element}: {kept}");
    }
    // `""` deletes: no attending any more, the rest kept
    let cleared = "PV1|1||||||\"\"||||||||||||IG-V-5^^^GH&1.2.840.114350.1&ISO^VN";
    send(&app, &visit("IG-V5-3", cleared)).await;
    let after = only(&app, "Encounter?identifier=IG-V-5").await;
    assert!(after.get("participant").is_none(), "{after}");
    assert_eq!(after["location"], stored["location"]);
}

async fn an_appointment_carries_its_order_and_when_each_resource_takes_part(app: TestApp) {
    let order = format!(
        "{MSH}ORM^O01^ORM_O01|IG-ORM-6|P|2.5.1\r\
         PID|1||IG-MRN-6{MRN}||Sato^Ken||19700101|M\r\
         ORC|NW|IG-PL-6^CPOE\r\
         OBR|1|IG-PL-6^CPOE||45378^Colonoscopy^C4\r"
    );
    send(&app, &order).await;
    let booking = format!(
        "{MSH}SIU^S12^SIU_S12|IG-SIU-6|P|2.5.1\r\
         SCH|IG-P-6^CPOE|IG-F-6^SCHED|||||ROUTINE^Routine^HL70276|FOLLOWUP^Follow-up^HL70277|||||||||||||||||Booked|IG-PL-6^CPOE\r\
         TQ1|1||||||20261201090000|20261201100000\r\
         PID|1||IG-MRN-6{MRN}||Sato^Ken||19700101|M\r\
         AIS|1||45378^Colonoscopy^C4\r\
         AIG|1||SCOPE-2^Endoscope 2^L|EQUIP^Equipment^L||||20261201090000|||45|min\r\
         AIP|1||1234^Welby^Marcus|MD^Physician||20261201091500|||30|min\r"
    );
    send(&app, &booking).await;
    let request = only(&app, "ServiceRequest?identifier=IG-PL-6").await;
    let appointment = only(&app, "Appointment?identifier=IG-F-6").await;
    assert_eq!(
        appointment["basedOn"][0]["reference"],
        format!("ServiceRequest/{}", request["id"].as_str().unwrap()),
        "{appointment}"
    );
    let participants = appointment["participant"].as_array().unwrap();
    let doctor = participants
        .iter()
        .find(|p| p["type"][0]["coding"][0]["code"] == "MD")
        .unwrap();
    assert_eq!(doctor["period"]["start"], "2026-12-01T09:15:00Z");
    assert_eq!(doctor["period"]["end"], "2026-12-01T09:45:00Z");
    let scope = participants
        .iter()
        .find(|p| p["actor"]["display"] == "Endoscope 2")
        .expect("the endoscope takes part");
    assert_eq!(scope["actor"]["identifier"]["value"], "SCOPE-2");
    assert_eq!(scope["period"]["end"], "2026-12-01T09:45:00Z");
}

async fn medication_and_vaccination_messages_carry_their_details(app: TestApp) {
    let dose = format!(
        "{MSH}RDE^O11^RDE_O11|IG-RDE-7|P|2.5.1\r\
         PID|1||IG-MRN-7{MRN}||Park^Min||19700101|F\r\
         ORC|NW|IG-PL-7^CPOE||||||||||1234^Welby^Marcus\r\
         RXE|^^^20261125^^R|313782^Acetaminophen 325 MG Oral Tablet^RXNORM|650||mg^milligram^UCUM\r\
         RXR|PO^Oral^HL70162|LA^Left arm^HL70163||SW^Swallow^HL70165|WF^With food^L\r\
         TQ1|1||Q6H^Every 6 hours^HL70335|0800~1400|||20261125080000|20261130080000|S|If in pain|Take with water|||20\r"
    );
    send(&app, &dose).await;
    let request = only(&app, "MedicationRequest?identifier=IG-PL-7").await;
    let dosage = &request["dosageInstruction"][0];
    assert_eq!(dosage["site"]["coding"][0]["code"], "LA", "{request}");
    assert_eq!(dosage["method"]["coding"][0]["code"], "SW");
    // TQ1: when, how often, how many times, at what times of day, how urgent
    let timing = &dosage["timing"];
    assert_eq!(timing["code"]["text"], "Q6H", "{dosage}");
    assert_eq!(
        timing["repeat"]["boundsPeriod"]["end"],
        "2026-11-30T08:00:00Z"
    );
    assert_eq!(timing["repeat"]["count"], 20);
    assert_eq!(
        timing["repeat"]["timeOfDay"],
        serde_json::json!(["08:00:00", "14:00:00"])
    );
    assert_eq!(dosage["additionalInstruction"][1]["text"], "If in pain");
    assert_eq!(dosage["text"], "Take with water");
    assert_eq!(request["priority"], "stat");
    assert_eq!(
        dosage["additionalInstruction"][0]["coding"][0]["code"],
        "WF"
    );

    let given = format!(
        "{MSH}RAS^O17^RAS_O17|IG-RAS-7|P|2.5.1\r\
         PID|1||IG-MRN-7{MRN}||Park^Min||19700101|F\r\
         ORC|RE|IG-PL-7^CPOE||||||||||1234^Welby^Marcus\r\
         RXA|0|1|20261125130000||313782^Acetaminophen 325 MG Oral Tablet^RXNORM|650|mg^milligram^UCUM|||||||||||||CP\r"
    );
    send(&app, &given).await;
    let administration = only(&app, "MedicationAdministration?identifier=IG-PL-7").await;
    let ordering = administration["performer"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["function"]["coding"][0]["code"] == "OP");
    assert!(ordering.is_some(), "{administration}");

    let shot = format!(
        "{MSH}VXU^V04^VXU_V04|IG-VXU-7|P|2.5.1\r\
         PID|1||IG-MRN-7{MRN}||Park^Min||19700101|F\r\
         ORC|RE||IG-IZ-7^REG\r\
         RXA|0|1|20261101093000||208^COVID-19 vaccine^CVX|0.3|mL^mL^UCUM||00^New record^NIP001|||||||||||CP|A|20261101100000|||||CLINIC^Room 2^^GOOD HEALTH|9 Clinic Rd^^Springfield^IL^62701\r"
    );
    send(&app, &shot).await;
    let immunization = only(&app, "Immunization?identifier=IG-IZ-7").await;
    assert_eq!(
        immunization["recorded"], "2026-11-01T10:00:00Z",
        "{immunization}"
    );
    let place = immunization["location"]["reference"].as_str().unwrap();
    let room = app.get(&format!("/{place}")).await.json();
    assert!(room["name"].as_str().unwrap().contains("Room 2"), "{room}");
    // RXA-28, the place's address
    assert_eq!(room["address"]["line"][0], "9 Clinic Rd", "{room}");
}

async fn a_standing_order_keeps_its_timing(app: TestApp) {
    let order = format!(
        "{MSH}OML^O21^OML_O21|IG-OML-8|P|2.5.1\r\
         PID|1||IG-MRN-8{MRN}||Vos^Ida||19700101|F\r\
         ORC|NW|IG-PL-8^CPOE\r\
         TQ1|1||Q1W^Every week^HL70335|0700||15^min|20261201070000|20261222070000||||||4\r\
         OBR|1|IG-PL-8^CPOE||2345-7^Glucose^LN\r"
    );
    send(&app, &order).await;
    let request = only(&app, "ServiceRequest?identifier=IG-PL-8").await;
    let timing = &request["occurrenceTiming"];
    assert_eq!(timing["code"]["text"], "Q1W", "{request}");
    assert_eq!(timing["repeat"]["count"], 4);
    assert_eq!(
        timing["repeat"]["timeOfDay"],
        serde_json::json!(["07:00:00"])
    );
    assert_eq!(
        timing["repeat"]["boundsPeriod"]["end"],
        "2026-12-22T07:00:00Z"
    );
    assert!(request.get("occurrencePeriod").is_none(), "{request}");
}

async fn an_absurd_procedure_length_is_said_and_left_out(app: TestApp) {
    let message = format!(
        "{MSH}ADT^A01^ADT_A01|IG-ADT-9|P|2.5.1\r\
         EVN|A01|20261125120000\r\
         PID|1||IG-MRN-9{MRN}||Ek^Olof||19700101|M\r\
         PV1|1|I|4W^401^A^GOOD HEALTH||||||||||||||||IG-V-9^^^GH&1.2.840.114350.1&ISO^VN\r\
         PR1|1||0FT44ZZ^Laparoscopic cholecystectomy^ICD10PCS||202611200930||4294967295\r"
    );
    let ack = send(&app, &message).await;
    assert!(ack.contains("PR1^1^7"), "{ack}");
    let procedure = only(&app, "Procedure?code=0FT44ZZ").await;
    assert_eq!(
        procedure["performedDateTime"], "2026-11-20T09:30:00Z",
        "{procedure}"
    );
}

crate::on_both_backends_with!(
    spawn,
    an_absurd_procedure_length_is_said_and_left_out,
    a_standing_order_keeps_its_timing,
    medication_and_vaccination_messages_carry_their_details,
    an_appointment_carries_its_order_and_when_each_resource_takes_part,
    a_thinner_visit_message_keeps_what_it_does_not_say,
    a_visit_without_a_number_is_the_patient_s_open_one,
    an_admission_carries_codes_procedures_and_measurements,
    a_result_names_its_order_its_specimen_and_its_notes,
    a_document_carries_its_confidentiality_and_authenticator,
);
