//! A source's drop folder (issue 25): the shipped CSV registry definition's files and HL7v2
//! batch files, swept from a real folder into a real store. Each file is applied once and
//! moved to `done/` (or `failed/`, when it cannot be read as its rule says) with its report
//! beside it: the rows or messages not applied, each with its line and why; the same file
//! dropped again is recognised, not applied twice; a server killed mid-file resumes it.

use crate::helpers::Backend;
use crate::vendor_pages::migrated_store;
use crate::vendor_poll::source_cli;
use emrsync::adapters::hl7v2::identity::{secret, stable_id};
use emrsync::adapters::hl7v2::queue;
use emrsync::adapters::vendor::dropped::Report;
use emrsync::adapters::vendor::folder::Dropper;
use emrsync::adapters::vendor::page;
use emrsync::adapters::vendor::source::Source;
use emrsync::config::{Settings, StoreArgs};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const MRN: &str = "https://registry.example.org/fhir/sid/mrn";

/// The shipped registry definition, its folder moved to `folder` and taken at once, with a
/// rule for HL7v2 batch files added.
fn definition(dir: &Path, folder: &Path) -> PathBuf {
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/capability/sources/patient-registry.json"
    );
    let mut def: Value = serde_json::from_str(&std::fs::read_to_string(shipped).unwrap()).unwrap();
    def["drop"]["path"] = json!(folder);
    def["drop"]["settleSeconds"] = json!(0);
    def["drop"]["pollSeconds"] = json!(1);
    def["drop"]["files"]
        .as_array_mut()
        .unwrap()
        .push(json!({"match": "*.hl7", "format": "hl7v2"}));
    let path = dir.join("registry.json");
    std::fs::write(&path, def.to_string()).unwrap();
    path
}

const HEADER: &str = "MRN,Status,Last Name,First Name,Middle Name,Date of Birth,Sex,Home Phone,Street,City,State,ZIP,Date of Death\n";

fn row(mrn: &str, last: &str, dob: &str) -> String {
    format!("{mrn},A,{last},Ann,,{dob},F,555-0100,1 Elm St,Albany,NY,12207,\n")
}

fn adt(control: &str, mrn: &str, family: &str, version: &str) -> String {
    format!(
        "MSH|^~\\&|LABSYS|CITYLAB|EMRSYNC|HUB|20261207101500||ADT^A04^ADT_A01|{control}|P|{version}\r\
         EVN|A04|20261207101500\r\
         PID|1||{mrn}^^^CITYLAB^MR||{family}^Ann||19700101|F\r\
         PV1|1|O\r"
    )
}

fn report_of(moved: &Path) -> Value {
    let text = std::fs::read_to_string(format!("{}.report.json", moved.display())).unwrap();
    serde_json::from_str(&text).unwrap()
}

mod drop_folder_files_are_applied_once {
    use super::*;
    #[test]
    fn sqlite() {
        super::drop_folder_files_are_applied_once(Backend::Sqlite)
    }
    #[test]
    fn postgres() {
        super::drop_folder_files_are_applied_once(Backend::Postgres)
    }
}

fn drop_folder_files_are_applied_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("drops");
    std::fs::create_dir_all(&folder).unwrap();
    let (settings, store) = migrated_store(backend, &dir.path().join("data"));
    let ingest = emrsync::startup::ingest(store.clone(), &settings).unwrap();
    let source = Arc::new(Source::load(&definition(dir.path(), &folder)).unwrap());
    let dropper = Dropper {
        inbound: emrsync::startup::inbound(ingest.clone(), &settings),
        ingest: ingest.clone(),
        source,
    };
    let sweep = || dropper.sweep(&|| Ok(())).unwrap();
    let key = secret(&store).unwrap();
    let patient = |mrn: &str| {
        store
            .current(
                "Patient",
                &stable_id(key.as_bytes(), "Patient", &[MRN, mrn]),
            )
            .ok()
            .map(|v| (v.version_id, v.json()))
    };

    // a registry export: three good rows, a date the map does not read, a row cut short;
    // and a file no rule takes, left where it is
    let csv = format!(
        "{HEADER}{}{}{}{}R-5,A,Short\n",
        row("R-1", "Abara", "03/07/1961"),
        row("R-2", "Bello", "1975-11-30"),
        row("R-3", "Chen", "31/12/1980"),
        row("R-4", "Diaz", "01/02/1990"),
    );
    std::fs::write(folder.join("patients-20261207.csv"), &csv).unwrap();
    std::fs::write(folder.join("notes.txt"), "not for us").unwrap();
    let reports = sweep();
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(
        (r.outcome.as_str(), r.records, r.accepted, r.refused),
        ("done", 5, 3, 2),
        "{r:?}"
    );
    let lines: Vec<u64> = r.refused_records.iter().map(|x| x.line).collect();
    assert_eq!(lines, [4, 6]);
    assert_eq!(r.refused_records[0].key.as_deref(), Some("R-3"));
    assert_eq!(
        r.refused_records[0].path.as_deref(),
        Some("$['Date of Birth']")
    );
    assert!(
        r.refused_records[1]
            .reason
            .contains("values where the header names 13")
    );
    let moved = folder.join("done/patients-20261207.csv");
    assert_eq!(std::fs::read_to_string(&moved).unwrap(), csv);
    assert_eq!(report_of(&moved)["refused"], 2);
    assert!(folder.join("notes.txt").exists());
    assert!(!folder.join("patients-20261207.csv").exists());
    let (version, abara) = patient("R-1").expect("R-1 applied");
    assert_eq!(version, 1);
    assert_eq!(abara["birthDate"], "1961-03-07");
    assert_eq!(abara["name"][0]["family"], "Abara");
    assert_eq!(abara["telecom"][0]["value"], "555-0100");
    assert_eq!(abara["active"], true);
    assert!(patient("R-3").is_none());
    // the row the map refused waits in the exception queue, for a replay after a fix
    let waiting = store
        .read(|c| page::open(c, "patient-registry", 10))
        .unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].vendor_key.as_deref(), Some("R-3"));

    // the same export dropped again under another name: recognised, nothing written
    std::fs::write(folder.join("patients-copy.csv"), &csv).unwrap();
    let again = sweep();
    assert_eq!(again[0].outcome, "duplicate");
    assert!(
        again[0]
            .duplicate_of
            .as_deref()
            .unwrap()
            .starts_with("patients-20261207.csv")
    );
    assert!(folder.join("done/patients-copy.csv").exists());
    assert_eq!(patient("R-1").unwrap().0, 1);
    // the next day's export, of the same name: one patient changed, applied, kept apart
    let next = format!("{HEADER}{}", row("R-1", "Abara-Okoye", "03/07/1961"));
    std::fs::write(folder.join("patients-20261207.csv"), &next).unwrap();
    assert_eq!(sweep()[0].accepted, 1);
    assert_eq!(patient("R-1").unwrap().0, 2);
    let done: Vec<String> = std::fs::read_dir(folder.join("done"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("patients-20261207.csv"))
        .collect();
    assert_eq!(done.len(), 2, "{done:?}");

    // an HL7v2 batch file: three messages in a batch, one of a version that is not v2
    let batch = format!(
        "FHS|^~\\&|LABSYS|CITYLAB\nBHS|^~\\&|LABSYS|CITYLAB\n{}{}{}BTS|3\nFTS|1\n",
        adt("B1", "L-1", "Batchone", "2.5.1"),
        adt("B2", "L-2", "Batchtwo", "2.5.1"),
        adt("B3", "L-3", "Batchthree", "3.0"),
    )
    .replace('\r', "\n");
    std::fs::write(folder.join("lab-0001.hl7"), &batch).unwrap();
    let r = sweep().remove(0);
    assert_eq!(
        (r.outcome.as_str(), r.records, r.accepted, r.refused),
        ("done", 3, 2, 1),
        "{r:?}"
    );
    let refused = &r.refused_records[0];
    assert_eq!(
        (refused.line, refused.key.as_deref(), refused.ack.as_deref()),
        (11, Some("B3"), Some("AR"))
    );
    assert!(refused.reason.contains("3.0"), "{refused:?}");
    // through the HL7v2 path: archived like a message off the wire, its Patient written
    let archived = store.read(|c| queue::list(c, None, 10)).unwrap();
    let applied: Vec<&str> = archived
        .iter()
        .filter(|e| e.status == "applied")
        .map(|e| e.control_id.as_str())
        .collect();
    assert_eq!(sorted(applied), ["B1", "B2"]);
    let written = archived.iter().find(|e| e.control_id == "B1").unwrap();
    let p = store
        .current("Patient", written.patient.as_deref().unwrap())
        .unwrap();
    assert_eq!(p.json()["name"][0]["family"], "Batchone");
    // its messages sent again in another file: acknowledged as before, not applied twice
    std::fs::write(
        folder.join("lab-0002.hl7"),
        adt("B1", "L-1", "Batchone", "2.5.1"),
    )
    .unwrap();
    let r = sweep().remove(0);
    assert_eq!((r.accepted, r.duplicates), (1, 1));

    // files that cannot be read as their rule says: refused whole, to failed/
    std::fs::write(folder.join("patients-bad.csv"), "MRN,MRN\n1,2\n").unwrap();
    std::fs::write(folder.join("garbage.hl7"), [0u8, 159, 146, 150]).unwrap();
    let reports = sweep();
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert_eq!(r.outcome, "failed", "{r:?}");
        assert_eq!(r.accepted, 0);
    }
    let bad = report_of(&folder.join("failed/patients-bad.csv"));
    assert!(bad["error"].as_str().unwrap().contains("twice"), "{bad}");
    assert!(folder.join("failed/garbage.hl7.report.json").exists());
    assert!(sweep().is_empty(), "nothing left to take");

    // a file left in processing/ under a rule the definition no longer has (a `*.dat` rule
    // removed while the server was stopped): to failed/, saying why, not left there for ever
    std::fs::write(folder.join("processing/orders-0001.dat"), "anything\n").unwrap();
    let reports = sweep();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].outcome, "failed");
    let stale = report_of(&folder.join("failed/orders-0001.dat"));
    assert!(
        stale["error"].as_str().unwrap().contains("no rule"),
        "{stale}"
    );
    assert!(!folder.join("processing/orders-0001.dat").exists());
    assert!(sweep().is_empty(), "nothing left to take");
}

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v
}

/// `serve --source` with a drop folder, killed (SIGKILL) in the middle of a large export and
/// started again: it resumes the file after the last chunk it recorded; every patient is in
/// the store once, written once, and the report counts every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_file_resumes_it_without_loss_or_doubles() {
    use crate::process::{free_port, start, wait_healthy};
    const ROWS: usize = 4_000;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("drops");
    std::fs::create_dir_all(&folder).unwrap();
    let def = definition(dir.path(), &folder);
    let store_args = StoreArgs::new(dir.path().join("data"), None);
    let http = reqwest::Client::new();
    let flags = ["--source", def.to_str().unwrap()];
    let mut server = start(free_port(), &store_args, &flags);
    wait_healthy(&http, &server.root).await;

    let mut csv = HEADER.to_string();
    for n in 0..ROWS {
        let dob = format!("{:02}/{:02}/{}", n % 12 + 1, n % 28 + 1, 1930 + n % 70);
        csv += &row(&format!("K-{n}"), &format!("Kay{n}"), &dob);
    }
    std::fs::write(folder.join(".patients-big.csv.part"), &csv).unwrap();
    std::fs::rename(
        folder.join(".patients-big.csv.part"),
        folder.join("patients-big.csv"),
    )
    .unwrap();
    let settings = Settings::new("127.0.0.1:0", store_args.clone());
    let store = emrsync::store::Store::open(&settings.store_settings().unwrap()).unwrap();
    let progress = || -> i64 {
        use diesel::prelude::*;
        use emrsync::store::schema::dropped_files as df;
        store
            .read(|c| {
                Ok(df::table
                    .select(df::done_count)
                    .get_result::<i64>(c)
                    .optional()?)
            })
            .unwrap()
            .unwrap_or(0)
    };
    for _ in 0..600 {
        if progress() >= 1_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let at_kill = progress();
    assert!(
        (1_000..ROWS as i64).contains(&at_kill),
        "killed mid-file: {at_kill} rows recorded"
    );
    assert!(folder.join("processing/patients-big.csv").exists());

    let server = start(free_port(), &store_args, &flags);
    wait_healthy(&http, &server.root).await;
    let moved = folder.join("done/patients-big.csv");
    let report = format!("{}.report.json", moved.display());
    for _ in 0..1_200 {
        if Path::new(&report).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r: Report = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        (r.outcome.as_str(), r.records, r.accepted, r.refused),
        ("done", ROWS, ROWS, 0)
    );
    let key = secret(&store).unwrap();
    for n in (0..ROWS).step_by(97).chain([ROWS - 1]) {
        let id = stable_id(key.as_bytes(), "Patient", &[MRN, &format!("K-{n}")]);
        let v = store
            .read(|c| emrsync::store::versions::current(c, "Patient", &id))
            .unwrap()
            .unwrap_or_else(|| panic!("K-{n} lost"));
        assert_eq!(v.version_id, 1, "K-{n} written once");
    }
    // every row's Patient once, and no other but the master patient index's golden records
    // (rows alike enough to be one person get one)
    let ids: Vec<String> = store
        .read(|c| {
            use diesel::prelude::*;
            use emrsync::store::schema::resources as r;
            Ok(r::table
                .filter(r::resource_type.eq("Patient"))
                .select(r::resource_id)
                .load(c)?)
        })
        .unwrap();
    let expected: std::collections::HashSet<String> = (0..ROWS)
        .map(|n| stable_id(key.as_bytes(), "Patient", &[MRN, &format!("K-{n}")]))
        .collect();
    assert_eq!(ids.iter().filter(|i| expected.contains(*i)).count(), ROWS);
    for id in ids.iter().filter(|i| !expected.contains(*i)) {
        let other = store.current("Patient", id).unwrap().json();
        assert_eq!(other["meta"]["tag"][0]["code"], "golden-record", "{other}");
    }
    drop(server);
}

/// `emrsync source drop` sweeps once and prints each file's report; `source list` shows the
/// folder's latest files.
#[test]
fn the_source_command_sweeps_the_folder_once() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("drops");
    std::fs::create_dir_all(&folder).unwrap();
    let def = definition(dir.path(), &folder);
    let data = dir.path().join("data");
    let cli = |args: &[&str]| source_cli(&def, &data, args);
    let (ok, said) = cli(&["drop"]);
    assert!(ok && said.contains("no file waiting"), "{said}");
    std::fs::write(
        folder.join("patients-1.csv"),
        format!(
            "{HEADER}{}{}",
            row("C-1", "Cole", "02/03/1984"),
            row("C-2", "Cruz", "02/30/1984")
        ),
    )
    .unwrap();
    let (ok, said) = cli(&["drop"]);
    assert!(!ok, "a refused row fails the command");
    let report: Value = serde_json::from_str(said.trim()).unwrap();
    assert_eq!(report["accepted"], 1);
    assert_eq!(report["refusedRecords"][0]["line"], 3);
    let (_, listed) = cli(&["list"]);
    assert!(
        listed.contains("patients-1.csv: 2 record(s), 1 in, 1 refused"),
        "{listed}"
    );
    assert!(listed.contains("exception queue: 1 waiting"), "{listed}");

    // an HL7v2 batch swept by the command: each message is in the audit trail, as it is when
    // the server sweeps (the command runs no audit flusher: it writes the rows itself)
    std::fs::write(
        folder.join("adt-1.hl7"),
        format!(
            "FHS|^~\\&|LABSYS|CITYLAB\nBHS|^~\\&|LABSYS|CITYLAB\n{}{}BTS|2\nFTS|1\n",
            adt("CLI1", "L-1", "Lane", "2.5.1").replace('\r', "\n"),
            adt("CLI2", "L-2", "Lowe", "2.5.1").replace('\r', "\n"),
        ),
    )
    .unwrap();
    let (ok, said) = cli(&["drop"]);
    assert!(ok, "{said}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emrsync"))
        .args(["audit", "export", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let messages: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"]["code"] == "110107")
        .collect();
    let controls: Vec<String> = messages
        .iter()
        .map(|e| e["outcomeDesc"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(messages.len(), 2, "{controls:?}");
    assert!(
        controls.iter().any(|c| c.contains("control id CLI1")),
        "{controls:?}"
    );
}
