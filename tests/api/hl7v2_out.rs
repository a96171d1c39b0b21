//! HL7v2 out, first slice (issue 23): every ADT of the corpus this project maps in is taken in
//! over MLLP, read back as FHIR, written out again as ADT (`adapters::hl7v2::out::adt`), and
//! both the original and ours are read by an HL7v2 parser written by others (the PyPI `hl7`
//! package): the patient's identifier, names, birth date and sex and the visit's class and
//! number come back as the sender gave them.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::hl7v2_corpus::{corpus, messages};
use crate::mllp_client::Mllp;
use emrsync::adapters::hl7v2::identity::Systems;
use emrsync::adapters::hl7v2::message::Delimiters;
use emrsync::adapters::hl7v2::out::adt::{Envelope, adt};
use serde_json::Value;

/// Reads messages (separated by 0x1C) with python-hl7 and prints the facts compared.
const READ: &str = r#"
import sys, json, hl7
out = []
for text in sys.stdin.read().split('\x1c'):
    if not text.strip():
        continue
    m = hl7.parse(text.replace('\r\n', '\r').replace('\n', '\r').lstrip('\ufeff'))
    def f(*at):
        try:
            return m.extract_field(*at)
        except (KeyError, IndexError):
            return ''
    out.append({'mrn': f('PID', 1, 3, 1, 1), 'ns': f('PID', 1, 3, 1, 4, 1),
                'uid': f('PID', 1, 3, 1, 4, 2), 'kind': f('PID', 1, 3, 1, 4, 3),
                'facility': f('MSH', 1, 4, 1, 1), 'family': f('PID', 1, 5, 1, 1),
                'given': f('PID', 1, 5, 1, 2), 'birth': f('PID', 1, 7)[:8], 'sex': f('PID', 1, 8),
                'class': f('PV1', 1, 2), 'visit': f('PV1', 1, 19, 1, 1)})
print(json.dumps(out))
"#;

fn read_with_python_hl7(messages: &[String]) -> Vec<Value> {
    read_with_python(READ, messages)
}

/// Run `script` (Python, with the PyPI `hl7` package at hand) over `messages`, given on its
/// stdin separated by 0x1C; what it prints is JSON.
pub fn read_with_python(script: &str, messages: &[String]) -> Vec<Value> {
    let python = std::env::var("EMRSYNC_TEST_PYTHON").expect(
        "EMRSYNC_TEST_PYTHON is not set: run the suite with scripts/test, which makes the venv",
    );
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(messages.join("\u{1c}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |s| s.mllp = Some("127.0.0.1:0".into())).await
}

async fn every_corpus_adt_goes_back_out_as_it_came(app: TestApp) {
    let index = std::fs::read_to_string(corpus().join("index.tsv")).unwrap();
    let mut originals = Vec::new();
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, msh9, class) = (cols[0], cols[2], cols[6]);
        let trigger = msh9.split('^').nth(1).unwrap_or("");
        if class != "ok" || !msh9.starts_with("ADT^") || !["A01", "A04", "A08"].contains(&trigger) {
            continue;
        }
        for m in messages(&std::fs::read(corpus().join(file)).unwrap()) {
            originals.push((file.to_string(), String::from_utf8_lossy(&m).to_string()));
        }
    }
    assert!(originals.len() >= 8, "{} messages", originals.len());
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let texts: Vec<String> = originals.iter().map(|(_, t)| t.clone()).collect();
    let theirs = read_with_python_hl7(&texts);
    let mut ours = Vec::new();
    for ((file, text), facts) in originals.iter().zip(&theirs) {
        let ack = mllp.send(text).await;
        assert_eq!(ack.code(), "AA", "{file}: {}", ack.text);
        let fact = |k: &str| facts[k].as_str().unwrap();
        // the corpus's senders reuse MRNs: the patient is the one of this sender's authority
        let system =
            Systems::get().for_authority(fact("ns"), fact("uid"), fact("kind"), fact("facility"));
        let mrn = fact("mrn");
        let found = app
            .get(&format!("Patient?identifier={system}|{mrn}"))
            .await
            .json();
        assert_eq!(found["total"], 1, "{file}: {system}|{mrn}: {found}");
        let patient = found["entry"][0]["resource"].clone();
        let id = patient["id"].as_str().unwrap();
        let visit = match fact("visit") {
            "" => String::new(),
            v => format!("&identifier={v}"),
        };
        let visits = app
            .get(&format!(
                "Encounter?patient=Patient/{id}{visit}&_sort=-_lastUpdated&_count=1"
            ))
            .await
            .json();
        let encounter = visits["entry"][0]["resource"].clone();
        let env = Envelope {
            sending_application: "EMRSYNC".into(),
            sending_facility: "HUB".into(),
            receiving_application: "LEGACY".into(),
            receiving_facility: "GH".into(),
            control_id: format!("OUT-{}", ours.len()),
            at: "2026-12-05T12:00:00Z".into(),
            version: "2.5.1".into(),
            delimiters: Delimiters::default(),
        };
        ours.push(adt(
            &env,
            "A08",
            (&patient, encounter.is_object().then_some(&encounter)),
            &[],
        ));
    }
    let back = read_with_python_hl7(&ours);
    let mut differences = Vec::new();
    for (((file, _), theirs), ours) in originals.iter().zip(&theirs).zip(&back) {
        for fact in ["mrn", "family", "given", "birth", "sex", "class", "visit"] {
            let (t, o) = (theirs[fact].as_str().unwrap(), ours[fact].as_str().unwrap());
            // facts the sender did not give are not compared; an unmapped sex is written as
            // the IG's table gives it back
            let comparable = !t.is_empty() && (fact != "sex" || ["F", "M", "O", "U"].contains(&t));
            if comparable && !t.eq_ignore_ascii_case(o) {
                differences.push(format!("{file} {fact}: sent {t:?}, written back {o:?}"));
            }
        }
    }
    assert!(differences.is_empty(), "{differences:#?}");
}

crate::on_both_backends_with!(spawn, every_corpus_adt_goes_back_out_as_it_came);
