//! What a sender said reaches the store as it meant it: times in the sender's zone.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::hl7v2::{adt, found};
use crate::mllp_client::Mllp;
use emrsync::adapters::hl7v2::zone::{Zone, facility_zone};

async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.hl7v2_time_zone = Zone::parse("America/New_York").unwrap();
        s.hl7v2_facility_time_zone = vec![facility_zone("PARIS LAB=Europe/Paris").unwrap()];
    })
    .await
}

/// The start of the visit of `visit`, as stored.
async fn visit_start(app: &TestApp, visit: &str) -> String {
    let encounters = found(&app.get(&format!("Encounter?identifier={visit}")).await);
    assert_eq!(encounters.len(), 1, "{encounters:?}");
    encounters[0]["period"]["start"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn times_without_an_offset_are_in_the_sender_s_zone(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    // no offset anywhere: the server's zone (New York, winter: -05:00)
    let plain = adt("A01", "TZ1", "MRN-TZ1", "V-TZ1", "Zoned");
    assert_eq!(mllp.send(&plain).await.code(), "AA");
    assert_eq!(
        visit_start(&app, "V-TZ1").await,
        "2026-11-25T11:30:00-05:00"
    );
    // a facility with a zone of its own (Paris, winter: +01:00)
    let paris =
        adt("A01", "TZ2", "MRN-TZ2", "V-TZ2", "Zoned").replace("REG|GOOD HEALTH", "REG|PARIS LAB");
    assert_eq!(mllp.send(&paris).await.code(), "AA");
    assert_eq!(
        visit_start(&app, "V-TZ2").await,
        "2026-11-25T11:30:00+01:00"
    );
    // MSH-7's offset is the message's zone, whatever the facility
    let offset = adt("A01", "TZ3", "MRN-TZ3", "V-TZ3", "Zoned")
        .replace("REG|GOOD HEALTH", "REG|PARIS LAB")
        .replace("|20261125120000||ADT", "|20261125120000-0800||ADT");
    assert_eq!(mllp.send(&offset).await.code(), "AA");
    assert_eq!(
        visit_start(&app, "V-TZ3").await,
        "2026-11-25T11:30:00-08:00"
    );
    // a date stays a date: the birth date is not moved by any zone
    let patients = found(
        &app.get("Patient?identifier=urn:oid:1.2.840.114350.1|MRN-TZ3")
            .await,
    );
    assert_eq!(patients[0]["birthDate"], "1980-02-14");
}

crate::on_both_backends_with!(spawn, times_without_an_offset_are_in_the_sender_s_zone);

/// A registry's VXU with three vaccinations under orders that share one number: three
/// Immunizations, none overwriting another; the same message again changes nothing.
async fn vaccinations_sharing_an_order_number_stay_apart(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let rxa = |date: &str, cvx: &str, name: &str| {
        format!(
            "ORC|RE||IZ-SHARED^REG\rRXA|0|1|{date}||{cvx}^{name}^CVX|999|||01^Historical^NIP001||||||||||CP|A\r"
        )
    };
    let vxu = |control: &str| {
        format!(
            "MSH|^~\\&|IIS|STATE REG|EMRSYNC|HUB|20261125120000||VXU^V04^VXU_V04|{control}|P|2.5.1\r\
             PID|1||MRN-VXU^^^GH&1.2.840.114350.1&ISO^MR||Shots^Sam||20200101|M\r{}{}{}",
            rxa("20200301", "08", "Hep B"),
            rxa("20200501", "20", "DTaP"),
            rxa("20200701", "10", "IPV")
        )
    };
    let ack = mllp.send(&vxu("VX1")).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let ack = mllp.send(&vxu("VX2")).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let pid = crate::hl7v2::patient(&app, "MRN-VXU").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shots = found(
        &app.get(&format!("Immunization?patient=Patient/{pid}&_sort=date"))
            .await,
    );
    let codes: Vec<&str> = shots
        .iter()
        .map(|i| i["vaccineCode"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["08", "20", "10"], "{shots:?}");
    assert!(
        shots.iter().all(|i| i["meta"]["versionId"] == "1"),
        "the resend changed nothing"
    );
}

crate::on_both_backends_with!(spawn, vaccinations_sharing_an_order_number_stay_apart);

/// A lab that writes an SN in one component (`<0.10`) is understood, not refused.
async fn a_lab_s_compact_sn_is_read(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let oru = crate::hl7v2_results::oru("SN1", "MRN-SN", "F", "4.0").replace(
        "OBX|2|SN|2160-0^Creatinine^LN||<^0.5|",
        "OBX|2|SN|2160-0^Creatinine^LN||<0.10|",
    );
    let ack = mllp.send(&oru).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let found = found(&app.get("Observation?code=http://loinc.org|2160-0").await);
    assert_eq!(found.len(), 1, "{found:?}");
    let q = &found[0]["valueQuantity"];
    assert_eq!(
        (q["comparator"].as_str(), q["value"].as_f64()),
        (Some("<"), Some(0.10)),
        "{q}"
    );
}

crate::on_both_backends_with!(spawn, a_lab_s_compact_sn_is_read);

/// A lab's thinner PID (MRN and name only) keeps what the ADT feed wrote (the SSN, the
/// address, the phone); a `""` in a field deletes what it maps to.
async fn a_thinner_pid_keeps_and_a_quoted_null_deletes(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp
        .send(&adt("A01", "NS1", "MRN-NS", "V-NS", "Nulls"))
        .await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let oru = crate::hl7v2_results::oru("NS2", "MRN-NS", "F", "4.2")
        .replace("Everyman^Adam", "Nulls^Adam");
    let ack = mllp.send(&oru).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let p = &crate::hl7v2::patient(&app, "MRN-NS").await[0];
    assert_eq!(p["address"][0]["city"], "Springfield", "{p}");
    assert_eq!(p["telecom"].as_array().map(Vec::len), Some(1), "{p}");
    let systems: Vec<&str> = p["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["system"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(systems.len(), 2, "the SSN the ADT feed gave is kept: {p}");
    // an update whose PID-11 is "" removes the address, and keeps the rest
    let cleared = adt("A08", "NS3", "MRN-NS", "V-NS", "Nulls")
        .replace("|12 Main St^^Springfield^IL^62701^USA^H|", "|\"\"|");
    let ack = mllp.send(&cleared).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let p = &crate::hl7v2::patient(&app, "MRN-NS").await[0];
    assert!(p.get("address").is_none(), "{p}");
    assert_eq!(p["name"][0]["family"], "Nulls");
}

crate::on_both_backends_with!(spawn, a_thinner_pid_keeps_and_a_quoted_null_deletes);

/// The PID fields beyond the core: birth time and place, mother's maiden name, race and
/// ethnicity (US Core), language, religion, multiple birth, SSN and driver's licence.
async fn every_pid_field_a_sender_fills_is_kept(app: TestApp) {
    let pid = [
        "PID",
        "1",
        "",
        "MRN-PX^^^GH&1.2.840.114350.1&ISO^MR",
        "",
        "Fields^Fiona^J",
        "Maiden^Mary",
        "198504120730",
        "F",
        "",
        "2106-3^White^CDCREC~2054-5^Black or African American^CDCREC",
        "1 Elm St^^Springfield^IL^62704",
        "",
        "^PRN^PH^^1^217^5550100",
        "",
        "es^Spanish^ISO639",
        "M",
        "CAT^Catholic^HL70006",
        "",
        "123-45-6789",
        "D1234567^IL^20300101",
        "",
        "2186-5^Not Hispanic or Latino^CDCREC",
        "Springfield, IL",
        "Y",
        "2",
        "",
        "",
        "",
        "",
        "N",
    ]
    .join("|");
    let message = format!(
        "MSH|^~\\&|REG|GOOD HEALTH|EMRSYNC|HUB|20261125120000||ADT^A04^ADT_A01|PX1|P|2.5.1\rEVN|A04\r{pid}\rPV1|1|O\r"
    );
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp.send(&message).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let p = &crate::hl7v2::patient(&app, "MRN-PX").await[0];
    let ext = |url: &str| {
        p["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["url"].as_str().is_some_and(|u| u.ends_with(url)))
            .cloned()
    };
    assert_eq!(p["birthDate"], "1985-04-12");
    let born = p["_birthDate"]["extension"][0]["valueDateTime"]
        .as_str()
        .unwrap_or_default();
    assert!(born.starts_with("1985-04-12T07:30:00"), "{p}");
    assert_eq!(
        ext("patient-mothersMaidenName").unwrap()["valueString"],
        "Maiden"
    );
    let race = ext("us-core-race").unwrap();
    let races: Vec<&str> = race["extension"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["valueCoding"]["code"].as_str())
        .collect();
    assert_eq!(races, ["2106-3", "2054-5"], "{race}");
    assert_eq!(
        ext("us-core-ethnicity").unwrap()["extension"][0]["valueCoding"]["code"],
        "2186-5"
    );
    assert_eq!(
        ext("patient-religion").unwrap()["valueCodeableConcept"]["coding"][0]["code"],
        "CAT"
    );
    assert_eq!(
        ext("patient-birthPlace").unwrap()["valueAddress"]["text"],
        "Springfield, IL"
    );
    assert_eq!(p["communication"][0]["language"]["coding"][0]["code"], "es");
    assert_eq!(p["multipleBirthInteger"], 2);
    assert_eq!(p["deceasedBoolean"], false);
    let ids: Vec<&str> = p["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["value"].as_str())
        .collect();
    assert!(
        ids.contains(&"123-45-6789") && ids.contains(&"D1234567"),
        "{ids:?}"
    );
}

crate::on_both_backends_with!(spawn, every_pid_field_a_sender_fills_is_kept);

/// An error in the third OBX is said to be there (ERR-2 `OBX^3^5`), not in the first.
async fn an_error_names_the_segment_occurrence(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let oru = crate::hl7v2_results::oru("OC1", "MRN-OC", "F", "4.0").replace(
        "OBX|3|CWE|625-4^Bacteria identified^LN||27268008^Salmonella^SCT",
        "OBX|3|NM|625-4^Bacteria identified^LN||many",
    );
    let ack = mllp.send(&oru).await;
    assert_eq!(ack.code(), "AE", "{}", ack.text);
    assert_eq!(ack.field("ERR", 2), "OBX^3^5", "{}", ack.text);
}

crate::on_both_backends_with!(spawn, an_error_names_the_segment_occurrence);

/// PD1, PV1 and PV2 beyond the visit number and times: primary care provider, admission type, hospital service, admit
/// source, discharge disposition, admit reason, expected discharge.
async fn the_visit_s_details_are_kept(app: TestApp) {
    let mut pv1 = vec![""; 46];
    pv1[0] = "PV1";
    pv1[1] = "1";
    pv1[2] = "I";
    pv1[4] = "E^Emergency";
    pv1[10] = "MED^Medical service";
    pv1[14] = "7^Emergency room";
    pv1[19] = "V-DET^^^GH&1.2.840.114350.1&ISO^VN";
    pv1[36] = "01^Discharged to home";
    pv1[44] = "20261125113000";
    let message = format!(
        "MSH|^~\\&|REG|GOOD HEALTH|EMRSYNC|HUB|20261125120000||ADT^A01^ADT_A01|DET1|P|2.5.1\r\
         EVN|A01\rPID|1||MRN-DET^^^GH&1.2.840.114350.1&ISO^MR||Details^Dana||19900101|F\r\
         PD1|||GOOD HEALTH CLINIC|5678^Quinn^Michaela^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO\r{}\r\
         PV2|||R07.9^Chest pain, unspecified^I10||||||20261128120000\r",
        pv1.join("|")
    );
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp.send(&message).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let e = &found(&app.get("Encounter?identifier=V-DET").await)[0];
    assert_eq!(e["type"][0]["coding"][0]["code"], "E", "{e}");
    assert_eq!(
        e["type"][0]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/v2-0007"
    );
    // the IG's service-type code first, the sender's table 0069 code kept
    assert_eq!(e["serviceType"]["coding"][0]["code"], "382", "{e}");
    assert_eq!(e["serviceType"]["coding"][1]["code"], "MED");
    assert_eq!(
        e["hospitalization"]["admitSource"]["coding"][0]["code"],
        "7"
    );
    assert_eq!(
        e["hospitalization"]["dischargeDisposition"]["coding"][0]["code"],
        "01"
    );
    assert_eq!(e["reasonCode"][0]["coding"][0]["code"], "R07.9");
    let planned_end = e["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["url"].as_str().unwrap().ends_with("plannedEndDate"))
        .unwrap();
    assert_eq!(planned_end["valueDateTime"], "2026-11-28T12:00:00-05:00");
    // PD1-4: the primary care provider
    let p = &crate::hl7v2::patient(&app, "MRN-DET").await[0];
    let gp = p["generalPractitioner"][0]["reference"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let doctor = app.get(&gp).await.json();
    assert_eq!(doctor["name"][0]["family"], "Quinn", "{p}");
}

crate::on_both_backends_with!(spawn, the_visit_s_details_are_kept);

/// A document with a PDF part, an unreadable ED placeholder and text lines: the PDF and the
/// text are both kept, the placeholder is left out with a warning in the AA (not an AE).
async fn a_document_keeps_every_readable_part(app: TestApp) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mdm = format!(
        "MSH|^~\\&|NOTES|GOOD HEALTH|EMRSYNC|HUB|20261125120000||MDM^T02^MDM_T02|DOC1|P|2.5.1\r\
         EVN|T02|20261125120000\rPID|1||MRN-DOC^^^GH&1.2.840.114350.1&ISO^MR||Docs^Dora||19700101|F\r\
         TXA|1|DS^Discharge summary^HL70270|AP|20261125115900||||||||DOC-PARTS^NOTES|||||AU\r\
         OBX|1|ED|18842-5^Discharge summary^LN||^application^pdf^Base64^{}||||||F\r\
         OBX|2|ED|18842-5^Discharge summary^LN||^application^pdf^Base64^not*base64!||||||F\r\
         OBX|3|TX|18842-5^Discharge summary^LN||Discharged home.||||||F\r",
        b64.encode(b"%PDF-1.4 summary")
    );
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp.send(&mdm).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    assert_eq!(
        ack.field("ERR", 2),
        "OBX^2^5",
        "the AA says which part was left out: {}",
        ack.text
    );
    let d = &found(&app.get("DocumentReference?identifier=DOC-PARTS").await)[0];
    let types: Vec<&str> = d["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["attachment"]["contentType"].as_str())
        .collect();
    assert_eq!(
        types,
        ["application/pdf", "text/plain; charset=utf-8"],
        "{d}"
    );
}

crate::on_both_backends_with!(spawn, a_document_keeps_every_readable_part);
