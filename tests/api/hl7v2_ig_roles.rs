//! The IG's rows for who took part and in what role (a report's interpreter, technician and
//! transcriptionist; a laboratory's medical director; an appointment's contacts), for what
//! points at what (a diagnosis due to another, a procedure part of another, an observation's
//! own specimen) and for what an order says beside what is ordered (call-back numbers, the
//! reason for its status, alternate numbers, clinical context, an offset and a duration).
//! Messages written for these tests from the IG's segment tables.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::hl7v2::found;
use crate::mllp_client::Mllp;
use serde_json::{Value, json};

async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |s| s.mllp = Some("127.0.0.1:0".into())).await
}

const MSH: &str = "MSH|^~\\&|REG|GOOD HEALTH|EMRSYNC|HUB|20261125120000||";
const MRN: &str = "^^^GH&1.2.840.114350.1&ISO^MR";

async fn send(app: &TestApp, message: &str) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp.send(message).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
}

async fn only(app: &TestApp, query: &str) -> Value {
    let list = found(&app.get(query).await);
    assert_eq!(list.len(), 1, "{query}: {list:?}");
    list[0].clone()
}

async fn read(app: &TestApp, reference: &Value) -> Value {
    let reference = reference.as_str().unwrap_or_else(|| panic!("{reference}"));
    app.get(&format!("/{reference}")).await.json()
}

fn extension<'a>(resource: &'a Value, url_end: &str) -> &'a Value {
    resource["extension"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|e| e["url"].as_str().is_some_and(|u| u.ends_with(url_end)))
        })
        .unwrap_or_else(|| panic!("no {url_end} in {resource}"))
}

async fn a_report_names_who_read_it_and_each_result_its_specimen(app: TestApp) {
    let result = format!(
        "{MSH}ORU^R01^ORU_R01|IGR-ORU-1|P|2.5.1\r\
         PID|1||IGR-MRN-1{MRN}||Lund^Eva||19700101|F\r\
         ORC|RE|IGR-PL-1^CPOE|IGR-FL-1^LAB|||||||||||||PATREQ^Patient request^L\r\
         OBR|1||IGR-FL-1^LAB|2345-7^Glucose^LN|||20261125083000||||||||||||||||||F|||||||5151&Reed&Rita&&&&MD&&NPI&2.16.840.1.113883.4.6&ISO^20261125090000||6161&Tech&Tom|7171&Type&Tia\r\
         OBX|1|NM|2345-7^Glucose^LN||95|mg/dL^mg/dL^UCUM|||||F||||LABX^Lab X^L||||||||||8181^Boss^Bea^^^Dr|||||RSLT|||IGR-SP-P1&CPOE^IGR-SP-F1&LAB\r"
    );
    send(&app, &result).await;
    let report = only(&app, "DiagnosticReport?identifier=IGR-FL-1").await;
    // OBR-32: the principal interpreter, a PractitionerRole of the NPI's practitioner, from 09:00
    let interpreter = read(&app, &report["resultsInterpreter"][0]["reference"]).await;
    assert_eq!(
        interpreter["period"]["start"], "2026-11-25T09:00:00Z",
        "{interpreter}"
    );
    let person = read(&app, &interpreter["practitioner"]["reference"]).await;
    assert_eq!(person["identifier"][0]["value"], "5151", "{person}");
    assert_eq!(
        person["identifier"][0]["system"],
        "http://hl7.org/fhir/sid/us-npi"
    );
    assert_eq!(person["name"][0]["family"], "Reed");
    // OBR-34 and OBR-35: the technician and the transcriptionist, each with its function
    let functions: Vec<&Value> = report["performer"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"))
        .iter()
        .map(|p| &p["extension"][0]["valueCodeableConcept"]["coding"][0]["code"])
        .collect();
    assert_eq!(functions, [&json!("SPRF"), &json!("TRANS")], "{report}");
    // ORC-16: why the report stands as it does
    let reason = extension(&report, "event-statusReason");
    assert_eq!(
        reason["valueCodeableConcept"]["coding"][0]["code"],
        "PATREQ"
    );

    let observation = only(
        &app,
        "Observation?code=2345-7&subject:Patient.identifier=IGR-MRN-1",
    )
    .await;
    // OBX-33: the specimen it was made on, by the placer's number
    let specimen = &observation["specimen"]["identifier"];
    assert_eq!(specimen["value"], "IGR-SP-P1", "{observation}");
    assert_eq!(specimen["type"]["coding"][0]["code"], "PLAC");
    // OBX-30: its sub-type
    let sub = extension(&observation, "observation-structure-type");
    assert_eq!(sub["valueCodeableConcept"]["coding"][0]["code"], "RSLT");
    // OBX-15, the producer, and OBX-25, the laboratory's medical director in that role
    let mut producer = None;
    let mut director = None;
    for p in observation["performer"].as_array().unwrap() {
        let r = read(&app, &p["reference"]).await;
        match r["resourceType"].as_str() {
            Some("Organization") => producer = Some(r),
            Some("PractitionerRole") => director = Some(r),
            _ => {}
        }
    }
    let producer = producer.unwrap_or_else(|| panic!("no producer in {observation}"));
    assert_eq!(producer["identifier"][0]["value"], "LABX", "{producer}");
    let director = director.unwrap_or_else(|| panic!("no director in {observation}"));
    assert_eq!(
        director["code"][0]["coding"][0]["code"], "MDIR",
        "{director}"
    );
    let boss = read(&app, &director["practitioner"]["reference"]).await;
    assert_eq!(boss["name"][0]["family"], "Boss", "{boss}");
}

async fn an_order_keeps_its_call_back_numbers_reasons_and_timing(app: TestApp) {
    let order = format!(
        "{MSH}OML^O21^OML_O21|IGR-OML-2|P|2.5.1\r\
         PID|1||IGR-MRN-2{MRN}||Berg^Ola||19700101|M\r\
         ORC|NW|IGR-PL-2^CPOE||||||||||1234^Welby^Marcus||^WPN^PH^^1^217^5550142||PATREQ^Patient request^L|||||||||||||||||ALT-2^^^OLDCPOE|||||IGR-FG-2^LAB\r\
         TQ1|1||Q6H^Every 6 hours^HL70335||30^min&minute&UCUM|2^h&hour&UCUM|20261201080000\r\
         OBR|1|IGR-PL-2^CPOE||2345-7^Glucose^LN|||||||||PREG^Pregnant^L||||^WPN^PH^^1^217^5550177\r"
    );
    send(&app, &order).await;
    let request = only(&app, "ServiceRequest?identifier=IGR-PL-2").await;
    // OBR-17 on the requester; ORC-14 is the order's only when OBR-17 is silent
    let callback = &request["requester"]["extension"][0];
    assert_eq!(
        callback["valueContactPoint"]["value"], "+1 217 5550177",
        "{request}"
    );
    assert!(request["extension"].as_array().unwrap().iter().all(|e| {
        !e["url"]
            .as_str()
            .unwrap()
            .ends_with("order-callback-phone-number")
    }));
    // ORC-16, OBR-13
    let reason = extension(&request, "request-statusReason");
    assert_eq!(
        reason["valueCodeableConcept"]["coding"][0]["code"],
        "PATREQ"
    );
    let info = extension(&request, "extension-ServiceRequest.supportingInfo");
    assert_eq!(info["valueCodeableConcept"]["coding"][0]["code"], "PREG");
    // ORC-33 (the alternate placer number) and ORC-38 (the filler's group number)
    let ids: Vec<(&str, &str)> = request["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["type"]["coding"][0]["code"].as_str().unwrap_or(""),
                i["value"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for id in [("PLAC", "ALT-2"), ("FGN", "IGR-FG-2"), ("PLAC", "IGR-PL-2")] {
        assert!(ids.contains(&id), "{id:?} in {ids:?}");
    }
    // TQ1-6: a start and a duration make the end; TQ1-5: the offset, in minutes
    let repeat = &request["occurrenceTiming"]["repeat"];
    assert_eq!(
        repeat["boundsPeriod"],
        json!({"start": "2026-12-01T08:00:00Z", "end": "2026-12-01T10:00:00Z"}),
        "{request}"
    );
    assert_eq!(repeat["offset"], 30);

    // without OBR-17, ORC-14 is the order's call-back number
    let plain = format!(
        "{MSH}ORM^O01^ORM_O01|IGR-ORM-3|P|2.5.1\r\
         PID|1||IGR-MRN-2{MRN}||Berg^Ola||19700101|M\r\
         ORC|NW|IGR-PL-3^CPOE||||||||||1234^Welby^Marcus||^WPN^PH^^1^217^5550142\r\
         OBR|1|IGR-PL-3^CPOE||2345-7^Glucose^LN\r"
    );
    send(&app, &plain).await;
    let request = only(&app, "ServiceRequest?identifier=IGR-PL-3").await;
    let callback = extension(&request, "order-callback-phone-number");
    assert_eq!(callback["valueContactPoint"]["value"], "+1 217 5550142");
}

async fn a_visit_links_diagnoses_procedures_and_the_insured(app: TestApp) {
    let message = format!(
        "{MSH}ADT^A01^ADT_A01|IGR-ADT-4|P|2.5.1\r\
         EVN|A01|20261125120000\r\
         PID|1||IGR-MRN-4{MRN}||Ortiz^Ana||19800214|F\r\
         PV1|1|I|4W^401^B^GOOD HEALTH||||||||||||||||IGR-V-4^^^GH&1.2.840.114350.1&ISO^VN\r\
         DG1|1||K80.20^Calculus of gallbladder^I10|||||||||||||||||DX-1^GH\r\
         DG1|2||K85.9^Acute pancreatitis^I10|||||||||||||||||DX-2^GH||DX-1^GH\r\
         PR1|1||47562^Laparoscopic cholecystectomy^C4||202611200930|||||||||||50^Bilateral^C4~LT^Left side^C4|||PROC-2^GH||||||PROC-1^GH\r\
         IN1|1|PPO1^Gold PPO|BCBS-IL^^^^NIIP|Blue Cross||||||EMP-42^^^IRS^FI|Acme Tools|||||Ortiz^Luis|SPO^Spouse^HL70063|19780301|1 Elm St^^Springfield^IL^62701|||||||||||||||||POL-4\r"
    );
    send(&app, &message).await;
    // DG1-22: the pancreatitis is due to the diagnosis the sender numbered DX-1
    let pancreatitis = only(
        &app,
        "Condition?code=K85.9&subject:Patient.identifier=IGR-MRN-4",
    )
    .await;
    let due = extension(&pancreatitis, "condition-dueTo");
    assert_eq!(due["valueReference"]["identifier"]["value"], "DX-1");
    // PR1-16: the modifiers joined to the code; PR1-25: part of the sender's PROC-1
    let procedure = only(&app, "Procedure?identifier=PROC-2").await;
    assert_eq!(
        procedure["code"]["coding"][0]["code"], "47562:50:LT",
        "{procedure}"
    );
    assert_eq!(procedure["partOf"][0]["identifier"]["value"], "PROC-1");
    // IN1-16 to IN1-19: the insured, a spouse; IN1-10 and IN1-11: the employer holds it
    let coverage = only(&app, "Coverage?beneficiary:Patient.identifier=IGR-MRN-4").await;
    let insured = read(&app, &coverage["subscriber"]["reference"]).await;
    assert_eq!(insured["resourceType"], "RelatedPerson", "{insured}");
    assert_eq!(insured["name"][0]["family"], "Ortiz");
    assert_eq!(insured["birthDate"], "1978-03-01");
    assert_eq!(insured["address"][0]["city"], "Springfield");
    let employer = read(&app, &coverage["policyHolder"]["reference"]).await;
    assert_eq!(employer["name"], "Acme Tools", "{employer}");
    assert_eq!(employer["identifier"][0]["value"], "EMP-42");
}

async fn an_appointment_names_its_contacts_and_offsets(app: TestApp) {
    let booking = format!(
        "{MSH}SIU^S12^SIU_S12|IGR-SIU-5|P|2.5.1\r\
         SCH|IGR-P-5^CPOE|IGR-F-5^SCHED|||||ROUTINE^Routine^HL70276|||||2121^Placer^Pam||||3131^Filler^Fay||||4141^Clerk^Cal|||||Booked\r\
         TQ1|1||||||20261201090000|20261201100000\r\
         PID|1||IGR-MRN-5{MRN}||Sato^Ken||19700101|M\r\
         AIP|1||1234^Welby^Marcus|MD^Physician|||15|min|30|min||Pending\r"
    );
    send(&app, &booking).await;
    let appointment = only(&app, "Appointment?identifier=IGR-F-5").await;
    let participants = appointment["participant"].as_array().unwrap();
    // AIP-7: 15 minutes after the appointment's start, for 30; AIP-12: pending, tentative
    let doctor = participants
        .iter()
        .find(|p| p["type"][0]["coding"][0]["code"] == "MD")
        .unwrap_or_else(|| panic!("{appointment}"));
    assert_eq!(
        doctor["period"],
        json!({"start": "2026-12-01T09:15:00Z", "end": "2026-12-01T09:45:00Z"})
    );
    assert_eq!(doctor["status"], "tentative");
    // SCH-12, SCH-16, SCH-20
    for (kind, family) in [
        (json!({"text": "placer contact"}), "Placer"),
        (json!({"text": "filler contact"}), "Filler"),
    ] {
        let p = participants
            .iter()
            .find(|p| p["type"][0] == kind)
            .unwrap_or_else(|| panic!("{kind} in {appointment}"));
        let who = read(&app, &p["actor"]["reference"]).await;
        assert_eq!(who["name"][0]["family"], family);
    }
    let enterer = participants
        .iter()
        .find(|p| p["type"][0]["coding"][0]["code"] == "enterer")
        .unwrap_or_else(|| panic!("{appointment}"));
    let clerk = read(&app, &enterer["actor"]["reference"]).await;
    assert_eq!(clerk["name"][0]["family"], "Clerk");
}

crate::on_both_backends_with!(
    spawn,
    a_report_names_who_read_it_and_each_result_its_specimen,
    an_order_keeps_its_call_back_numbers_reasons_and_timing,
    a_visit_links_diagnoses_procedures_and_the_insured,
    an_appointment_names_its_contacts_and_offsets,
);
