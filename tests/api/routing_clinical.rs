//! Sync out of orders and results (issue 23): an ambulatory EMR (`legacy_emr`) receives the
//! orders placed in the hospital (ORM) and their results from the lab (ORU), the correction
//! too, in order; and every message of the corpus that this project maps in goes back out to
//! a target that hears everything, each one read without error by an HL7v2 parser written by
//! others (the PyPI `hl7` package), keeping the patient's identifier.

use crate::helpers::{Backend, TestApp};
use crate::legacy_emr::{LegacyEmr, field};
use crate::routing::{admin_get, admin_put, events, send, spawn, summary_when};
use serde_json::json;

const PID: &str = "PID|1||M700^^^GH&1.2.840.114350.1&ISO^MR||Okafor^Ada||19650303|F\r";

fn orm(control: &str, placer: &str, code: &str) -> String {
    format!(
        "MSH|^~\\&|CPOE|GOOD HEALTH|EMRSYNC|HUB|20261206090000||ORM^O01^ORM_O01|{control}|P|2.5.1\r{PID}\
         ORC|{code}|{placer}^CPOE|||||||20261206085500|||1234^Welby^Marcus^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO\r\
         OBR|1|{placer}^CPOE||2823-3^Potassium^LN|||20261206090000\r"
    )
}

fn oru(control: &str, placer: &str, status: &str, potassium: &str) -> String {
    format!(
        "MSH|^~\\&|LAB|GOOD HEALTH|EMRSYNC|HUB|20261206100000||ORU^R01^ORU_R01|{control}|P|2.5.1\r{PID}\
         OBR|1|{placer}^CPOE|F-{placer}^LAB|2823-3^Potassium^LN|||20261206093000|||||||||||||||20261206095900|||{status}\r\
         OBX|1|NM|2823-3^Potassium^LN||{potassium}|mmol/L^mmol/L^UCUM|3.5-5.1|{flag}|||{status}|||20261206093000\r",
        flag = if potassium.parse::<f64>().unwrap() > 5.1 {
            "H"
        } else {
            "N"
        }
    )
}

async fn an_order_its_result_and_the_correction_reach_the_ambulatory_emr(app: TestApp) {
    let amb = LegacyEmr::start().await;
    let routes = json!({"targets": [{
        "name": "ambulatory",
        "channel": {"type": "mllp", "address": amb.address()},
        "format": {"type": "hl7v2", "receiving_application": "AMB"},
        "events": [{"criteria": "ServiceRequest"}, {"criteria": "DiagnosticReport"},
                   {"criteria": "Observation"}]}]});
    let r = admin_put(&app, "routes", &routes).await;
    assert_eq!(r.status, 200, "{}", r.text);
    send(&app, &orm("O1", "PL-9", "NW")).await;
    send(&app, &oru("L1", "PL-9", "F", "5.9")).await;
    send(&app, &oru("L2", "PL-9", "C", "4.1")).await;
    let got = amb.wait_for(3, 20).await;
    assert_eq!(
        events(&got),
        ["ORM^O01^ORM_O01", "ORU^R01^ORU_R01", "ORU^R01^ORU_R01"],
        "{got:#?}"
    );
    let order = &got[0];
    assert_eq!(field(order, "ORC", 1), "NW");
    assert_eq!(field(order, "ORC", 2), "PL-9");
    assert!(
        field(order, "ORC", 12).starts_with("1234^Welby^Marcus"),
        "{order}"
    );
    assert!(
        field(order, "OBR", 4).starts_with("2823-3^Potassium^LN"),
        "{order}"
    );
    assert!(field(order, "PID", 3).starts_with("M700^"), "{order}");
    let (result, correction) = (&got[1], &got[2]);
    assert_eq!(field(result, "OBR", 2), "PL-9");
    assert_eq!(field(result, "OBR", 3), "F-PL-9");
    assert_eq!(
        (
            field(result, "OBX", 5),
            field(result, "OBX", 8),
            field(result, "OBX", 11)
        ),
        ("5.9".to_string(), "H".to_string(), "F".to_string())
    );
    assert!(field(result, "OBX", 6).starts_with("mmol/L"), "{result}");
    assert_eq!(field(result, "OBX", 14), "20261206093000+0000");
    assert_eq!(
        (field(correction, "OBX", 5), field(correction, "OBX", 11)),
        ("4.1".to_string(), "C".to_string())
    );
    // a cancellation of the order is an ORM with CA
    send(&app, &orm("O2", "PL-9", "CA")).await;
    let got = amb.wait_for(4, 20).await;
    assert_eq!(field(&got[3], "ORC", 1), "CA", "{got:#?}");
    let sent = summary_when(&app, |s| s["targets"]["ambulatory"]["sent"] == 4).await;
    assert_eq!(sent["targets"]["ambulatory"]["sent"], 4, "{sent}");
}

/// A lab that knows potassium as its own `K` and takes OML: the hub's LOINC coding is sent as
/// the alternate after the lab's code, by a ConceptMap the team loads; until it is loaded, the
/// order waits in the exception queue saying so, and a replay sends it.
async fn a_lab_gets_its_own_codes_and_orders_as_oml(app: TestApp) {
    const MAP: &str = "http://goodhealth.example.org/fhir/ConceptMap/lab-codes";
    let lab = LegacyEmr::start().await;
    let routes = json!({"targets": [{
        "name": "lab",
        "channel": {"type": "mllp", "address": lab.address()},
        "format": {"type": "hl7v2", "orders": "OML^O21"},
        "events": [{"criteria": "ServiceRequest"}],
        "value_maps": [MAP]}]});
    let r = admin_put(&app, "routes", &routes).await;
    assert_eq!(r.status, 200, "{}", r.text);
    send(&app, &orm("O1", "PL-7", "NW")).await;
    let mut failed = json!(null);
    for _ in 0..100 {
        failed = admin_get(&app, "outbound?status=failed").await;
        if !failed["messages"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let message = &failed["messages"][0];
    assert!(
        message["lastError"].as_str().unwrap().contains(MAP),
        "{failed}"
    );
    let map = json!({"resourceType": "ConceptMap", "id": "lab-codes", "url": MAP,
        "status": "active", "group": [{
            "source": "http://loinc.org",
            "target": "http://emrsync.org/hl7v2/local-code-system/99LAB",
            "element": [{"code": "2823-3", "target": [{"code": "K", "display": "Potassium",
                                                       "equivalence": "equivalent"}]}]}]});
    let r = app.put("ConceptMap/lab-codes", &map).await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
    let url = format!("{}/admin/outbound/{}/replay", app.root, message["seq"]);
    let replay = app.send(app.client.post(&url)).await;
    assert_eq!(replay.status, 200, "{}", replay.text);
    let got = lab.wait_for(1, 20).await;
    assert_eq!(events(&got), ["OML^O21^OML_O21"], "{got:#?}");
    assert_eq!(
        field(&got[0], "OBR", 4),
        "K^Potassium^99LAB^2823-3^Potassium^LN",
        "{}",
        got[0]
    );
}

/// A panel of two results, to a target that files each result by itself: one ORU per result
/// (each with its report's OBR and its own control id), and a correction of one result sends
/// that result alone.
async fn a_target_that_files_results_one_by_one_gets_one_oru_each(app: TestApp) {
    let chart = LegacyEmr::start().await;
    let routes = json!({"targets": [{
        "name": "chart",
        "channel": {"type": "mllp", "address": chart.address()},
        "format": {"type": "hl7v2", "results": "per-observation"},
        "events": [{"criteria": "DiagnosticReport"}, {"criteria": "Observation"}]}]});
    let r = admin_put(&app, "routes", &routes).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let panel = |control: &str, status: &str, potassium: &str| {
        format!(
            "MSH|^~\\&|LAB|GOOD HEALTH|EMRSYNC|HUB|20261206100000||ORU^R01^ORU_R01|{control}|P|2.5.1\r{PID}\
             OBR|1|PL-5^CPOE|F-PL-5^LAB|24320-4^Basic metabolic panel^LN|||20261206093000|||||||||||||||20261206095900|||{status}\r\
             OBX|1|NM|2823-3^Potassium^LN||{potassium}|mmol/L^mmol/L^UCUM|3.5-5.1||||{status}|||20261206093000\r\
             OBX|2|NM|2951-2^Sodium^LN||140|mmol/L^mmol/L^UCUM|135-145||||F|||20261206093000\r"
        )
    };
    send(&app, &panel("P1", "F", "5.9")).await;
    let got = chart.wait_for(2, 20).await;
    assert_eq!(events(&got), ["ORU^R01^ORU_R01", "ORU^R01^ORU_R01"]);
    let control = |m: &str| field(m, "MSH", 10);
    assert_eq!(
        (
            control(&got[0]).ends_with("-1"),
            control(&got[1]).ends_with("-2")
        ),
        (true, true),
        "{got:#?}"
    );
    for (m, code) in got.iter().zip(["2823-3", "2951-2"]) {
        assert!(field(m, "OBR", 4).starts_with("24320-4^"), "{m}");
        assert!(field(m, "OBX", 3).starts_with(code), "{m}");
        assert_eq!(m.matches("\rOBX|").count(), 1, "{m}");
    }
    // the potassium corrected: that result alone goes
    send(&app, &panel("P2", "C", "4.1")).await;
    let got = chart.wait_for(3, 20).await;
    assert!(field(&got[2], "OBX", 3).starts_with("2823-3"), "{}", got[2]);
    assert_eq!(
        (field(&got[2], "OBX", 5), field(&got[2], "OBX", 11)),
        ("4.1".to_string(), "C".to_string())
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        chart.got().len(),
        3,
        "the unchanged sodium is not sent again"
    );
}

/// Reads messages (separated by 0x1C) with python-hl7: each one's type, PID-3.1 and its facts
/// (`kind value`): the identifiers, codes, values and times of the segments the inbound map of
/// its kind of message takes in, each component 1 unescaped; times to the minute, numbers as
/// numbers, text by line; a value that must not repeat (NM, CWE...) by its first repetition.
/// Not compared, as the maps do not take them in: the visit (PV1-19) of other messages than
/// ADT, OBX-5 of ED (the report's presented form) and RP (a pointer to data elsewhere), and
/// the OBX of a specimen (after SPM).
const READ: &str = r#"
import sys, json, hl7
PATIENT = {'PID': [(3, 'id')], 'MRG': [(1, 'id')]}
RESULTS = {'ORC': [(2, 'placer')], 'OBR': [(4, 'code')],
           'OBX': [(3, 'code'), (5, 'value'), (14, 'time')]}
SPEC = {'ADT': {**PATIENT, 'PV1': [(19, 'visit')], 'OBX': RESULTS['OBX']}, 'ORU': {**PATIENT, **RESULTS},
        'ORM': {**PATIENT, 'ORC': [(2, 'placer')], 'OBR': [(4, 'code')]},
        'RDE': {**PATIENT, 'ORC': [(2, 'placer')], 'RXE': [(2, 'code'), (3, 'value')]},
        'VXU': {**PATIENT, 'RXA': [(3, 'time'), (5, 'code'), (15, 'lot')]},
        'SIU': {**PATIENT, 'SCH': [(2, 'appointment')]},
        'MDM': {**PATIENT, 'TXA': [(12, 'document')]}}
SPEC['OML'] = SPEC['ORM']
out = []
for text in sys.stdin.read().split('\x1c'):
    if not text.strip():
        continue
    m = hl7.parse(text.replace('\r\n', '\r').replace('\n', '\r').lstrip('\ufeff'))
    rep, comp = m.separators[2], m.separators[3]
    kind_of = str(m.segment('MSH')[9]).split(comp)[0]
    facts = set()
    spec = SPEC.get(kind_of, PATIENT)
    specimen = False
    for seg in m:
        sid = str(seg[0])
        specimen = sid == 'SPM' or (specimen and sid not in ('OBR', 'ORC'))
        if sid not in spec or specimen:
            continue
        text_value = sid == 'OBX' and str(seg[2]) in ('TX', 'FT')
        for n, kind in spec[sid]:
            if n >= len(seg):
                continue
            reps = str(seg[n]).split(rep)
            if kind == 'value' and not text_value:
                reps = reps[:1]
            if kind == 'value' and str(seg[2]) in ('ED', 'RP'):
                continue
            for r in reps:
                for v in m.unescape(r.split(comp)[0]).replace('\r', '\n').split('\n'):
                    v = v.strip()
                    if not v or v == '""':
                        continue
                    if kind == 'time':
                        v = v[:12]
                    if kind == 'value':
                        try:
                            v = repr(float(v))
                        except ValueError:
                            pass
                    facts.add(kind + ' ' + v)
    out.append({'type': str(m.segment('MSH')[9]), 'mrn': m.extract_field('PID', 1, 3, 1, 1),
                'facts': sorted(facts)})
print(json.dumps(out))
"#;

async fn every_corpus_message_goes_back_out_readable(app: TestApp) {
    let everything = LegacyEmr::start().await;
    let kinds = [
        "Patient",
        "Encounter",
        "ServiceRequest",
        "DiagnosticReport",
        "Observation",
        "MedicationRequest",
        "Immunization",
        "Appointment",
        "DocumentReference",
    ];
    let routes = json!({"targets": [{
        "name": "everything",
        "channel": {"type": "mllp", "address": everything.address()},
        "format": {"type": "hl7v2"},
        "events": kinds.iter().map(|k| json!({"criteria": k})).collect::<Vec<_>>()}]});
    let r = admin_put(&app, "routes", &routes).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let corpus = crate::hl7v2_corpus::corpus();
    let index = std::fs::read_to_string(corpus.join("index.tsv")).unwrap();
    let mut taken = Vec::new();
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols[6] != "ok" {
            continue;
        }
        for m in crate::hl7v2_corpus::messages(&std::fs::read(corpus.join(cols[0])).unwrap()) {
            let mut mllp = crate::mllp_client::Mllp::connect(app.mllp.unwrap()).await;
            let text = String::from_utf8_lossy(&m).to_string();
            if mllp.send(&text).await.code() == "AA" {
                taken.push((cols[0], text));
            }
        }
    }
    let sent = taken.len();
    assert!(sent > 20, "only {sent} corpus messages were taken");
    // a last patient registered: queues keep commit order, so when it arrives everything
    // before it has been sent, refused or skipped
    let last = "MSH|^~\\&|REG|GH|EMRSYNC|GH|20261206120000||ADT^A28^ADT_A05|LAST1|P|2.5.1\r\
                EVN|A28|20261206120000\rPID|1||LAST-1^^^GH^MR||Last^Message||19800101|F\r";
    let mut mllp = crate::mllp_client::Mllp::connect(app.mllp.unwrap()).await;
    assert_eq!(mllp.send(last).await.code(), "AA");
    for _ in 0..300 {
        if everything.got().iter().any(|m| m.contains("LAST-1")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let summary = summary_when(&app, |s| s["targets"]["everything"]["pending"].is_null()).await;
    assert!(
        summary["targets"]["everything"]["pending"].is_null(),
        "{summary}"
    );
    let failed = admin_get(&app, "outbound?status=failed").await;
    assert_eq!(failed["messages"].as_array().unwrap().len(), 0, "{failed}");
    let mut got = everything.got();
    let registered = got.pop().unwrap();
    assert!(
        registered.contains("ADT^A28^ADT_A05") && registered.contains("LAST-1"),
        "{registered}"
    );
    // each change becomes one message of its write and patient: no more than came in (the
    // MPI's golden records are not sent), and every kind the renderers write is there
    assert!(
        got.len() >= sent * 2 / 3 && got.len() <= sent,
        "{} messages out for {sent} in",
        got.len()
    );
    let kinds = events(&got);
    for kind in [
        "ADT^A01^ADT_A01",
        "ADT^A03^ADT_A03",
        "ADT^A40^ADT_A39",
        "ORM^O01^ORM_O01",
        "ORU^R01^ORU_R01",
        "RDE^O11^RDE_O11",
        "VXU^V04^VXU_V04",
        "SIU^S12^SIU_S12",
        "MDM^T02^MDM_T02",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    let read = crate::hl7v2_out::read_with_python(READ, &got);
    assert_eq!(read.len(), got.len());
    for (m, r) in got.iter().zip(&read) {
        assert_eq!(
            r["mrn"].as_str().unwrap(),
            field(m, "PID", 3).split(['~', '^']).next().unwrap()
        );
        assert!(!r["mrn"].as_str().unwrap().is_empty(), "no MRN in {m}");
    }
    // what came in is what went out: every identifier, code, value and time of the messages
    // taken is in one of the messages sent
    let went: std::collections::BTreeSet<&str> = read
        .iter()
        .flat_map(|r| r["facts"].as_array().unwrap().iter())
        .map(|f| f.as_str().unwrap())
        .collect();
    let texts: Vec<String> = taken.iter().map(|(_, t)| t.clone()).collect();
    let came = crate::hl7v2_out::read_with_python(READ, &texts);
    let mut lost = Vec::new();
    for ((path, _), r) in taken.iter().zip(&came) {
        for f in r["facts"].as_array().unwrap() {
            if !went.contains(f.as_str().unwrap()) {
                lost.push(format!("{path}: {f}"));
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{} facts lost on the way: {lost:#?}",
        lost.len()
    );
}

/// Original-mode ACKs: several corpus messages fill MSH-15/16 and each is read one ACK here.
async fn spawn_original(backend: Backend) -> TestApp {
    crate::helpers::spawn_with(backend, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.mllp_original_acks = true;
    })
    .await
}

crate::on_both_backends_with!(
    spawn,
    an_order_its_result_and_the_correction_reach_the_ambulatory_emr,
    a_lab_gets_its_own_codes_and_orders_as_oml,
    a_target_that_files_results_one_by_one_gets_one_oru_each,
);
crate::on_both_backends_with!(spawn_original, every_corpus_message_goes_back_out_readable);
