//! The command line as a newcomer meets it: storage flags before or after the verb, `token`
//! refusing what no server would accept, and a 401 that says which claim failed.

use crate::helpers::{Backend, spawn};
use std::path::Path;
use std::process::Command;

/// `emrsync <args>` with nothing from the environment choosing the database: (succeeded,
/// stdout, stderr).
fn emrsync(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_emrsync"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("EMRSYNC_DATA_DIR")
        .env_remove("EMRSYNC_BASE_URL")
        .env_remove("EMRSYNC_MASTER_KEY")
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run emrsync");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `emrsync <args>` as `emrsync` runs it, with owned arguments.
pub fn emrsync_owned(args: &[String]) -> (bool, String, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    emrsync(&args, &[])
}

/// The storage flags that name `app`'s database.
pub fn store_flags(app: &crate::helpers::TestApp) -> Vec<String> {
    match &app.database {
        emrsync::store::Database::Postgres(url) => {
            vec!["--database-url".into(), url.expose().clone()]
        }
        emrsync::store::Database::Sqlite(..) => {
            vec!["--data-dir".into(), app.dir.path().display().to_string()]
        }
    }
}

fn dir_arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_storage_flags_work_before_or_after_the_verb() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    let secret = [("EMRSYNC_CLIENT_SECRET", "a-secret-of-the-payer-app")];
    let add = |id: &str, at_end: bool| {
        let mut args = vec!["client"];
        if !at_end {
            args.extend(["--data-dir", d]);
        }
        args.extend([
            "add",
            "--id",
            id,
            "--kind",
            "symmetric",
            "--scope",
            "system/*.rs",
        ]);
        if at_end {
            args.extend(["--data-dir", d]);
        }
        emrsync(&args, &secret)
    };
    let (ok, _, err) = add("before", false);
    assert!(ok, "{err}");
    let (ok, _, err) = add("after", true);
    assert!(ok, "{err}");
    // both landed in the one database, listed either way round
    for args in [
        &["client", "list", "--data-dir", d][..],
        &["client", "--data-dir", d, "list"][..],
    ] {
        let (ok, out, err) = emrsync(args, &[]);
        assert!(ok, "{err}");
        assert!(out.contains("before") && out.contains("after"), "{out}");
    }
    let password = [("EMRSYNC_USER_PASSWORD", "a-long-password")];
    let user = [
        "user",
        "add",
        "--username",
        "u",
        "--fhir-user",
        "Practitioner/1",
    ];
    let (ok, _, err) = emrsync(&[&user[..], &["--data-dir", d]].concat(), &password);
    assert!(ok, "{err}");
}

#[test]
fn token_refuses_what_no_server_would_accept() {
    // a directory no server ran on: no store or key is made there, and it says where it looked
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("not-the-servers");
    let d = dir_arg(&elsewhere);
    let (ok, out, err) = emrsync(&["token", "--scope", "system/*.rs", "--data-dir", d], &[]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains("no server has run on") && err.contains(d),
        "{err}"
    );
    assert!(!elsewhere.exists(), "nothing is created there");
    // a patient scope names its patient, or is refused before anything else
    let (ok, _, err) = emrsync(&["token", "--scope", "patient/*.rs", "--data-dir", d], &[]);
    assert!(!ok && err.contains("--patient"), "{err}");
}

#[test]
fn a_match_model_that_does_not_parse_refuses_the_start_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    let shipped: serde_json::Value =
        serde_json::from_str(include_str!("../../capability/mpi/model.json")).unwrap();
    let mut broken = shipped.clone();
    broken["fields"]["birth"]
        .as_object_mut()
        .unwrap()
        .remove("exact");
    std::fs::write(&model, broken.to_string()).unwrap();
    let data = dir.path().join("data");
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir_arg(&data),
        "--mpi-model",
        dir_arg(&model),
    ];
    let (ok, _, err) = emrsync(&args, &[]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("--mpi-model")
            && err.contains("model.json")
            && err.contains("fields.birth.exact"),
        "{err}"
    );
    // grades out of order are refused too
    let mut broken = shipped;
    broken["grades"]["possible"] = serde_json::json!(0.999);
    std::fs::write(&model, broken.to_string()).unwrap();
    let (ok, _, err) = emrsync(&args, &[]);
    assert!(!ok && err.contains("grades"), "{err}");
}

/// `mpi reviews` lists the pairs a person should look at, side by side; `mpi decide` settles
/// one, and the server's admin API shows the decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_queue_is_worked_from_the_command_line() {
    let app = spawn(Backend::Sqlite).await;
    let d = dir_arg(app.dir.path());
    let person = |given: &str| {
        serde_json::json!({"resourceType": "Patient", "name": [{"family": "Neumann", "given": [given]}],
            "birthDate": "1965-11-11", "address": [{"line": ["8 Stanley Street"], "postalCode": "62701"}]})
    };
    let (a, _) = app.create(&person("Michaela")).await;
    let (b, _) = app.create(&person("Sophie")).await;
    app.mpi_settled().await;
    let (ok, out, err) = emrsync(&["mpi", "reviews", "--data-dir", d], &[]);
    assert!(ok, "{err}");
    assert!(out.contains(&a) && out.contains(&b), "{out}");
    assert!(out.contains("Michaela") && out.contains("Sophie"), "{out}");
    let id = out.split_whitespace().next().unwrap().to_string();
    let (ok, out, err) = emrsync(
        &[
            "mpi",
            "decide",
            &id,
            "different",
            "--by",
            "nurse",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.contains("decided: different"), "{out}");
    let (ok, _, err) = emrsync(
        &["mpi", "decide", "no-such-review", "same", "--data-dir", d],
        &[],
    );
    assert!(!ok && err.contains("no review"), "{err}");
    let (ok, out, _) = emrsync(
        &["mpi", "reviews", "--status", "different", "--data-dir", d],
        &[],
    );
    assert!(ok && out.contains(&id), "{out}");
    let r = app
        .client
        .get(format!("{}/admin/mpi/reviews?status=different", app.root))
        .send()
        .await
        .unwrap();
    let listed: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        listed["reviews"][0]["decidedBy"], "operator nurse",
        "{listed}"
    );
}

/// `token` mints for the base URL the server runs with, unless told another; a token for
/// another base gets a 401 that names the claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_for_the_base_the_server_runs_with() {
    let app = spawn(Backend::Sqlite).await;
    let d = dir_arg(app.dir.path());
    let (ok, out, err) = emrsync(
        &["token", "--scope", "system/Patient.rs", "--data-dir", d],
        &[],
    );
    assert!(ok, "{err}");
    assert_eq!(app.get_as(out.trim(), "Patient").await.status, 200);

    let other = "http://127.0.0.1:1/fhir";
    let (ok, out, err) = emrsync(
        &[
            "token",
            "--scope",
            "system/Patient.rs",
            "--data-dir",
            d,
            "--base-url",
            other,
        ],
        &[],
    );
    assert!(ok, "{err}");
    let r = app.get_as(out.trim(), "Patient").await;
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    // (the issuer is checked first: it is made from the same base)
    assert!(
        challenge.contains("its iss is not") && challenge.contains(&app.root),
        "{challenge}"
    );
}

/// `emrsync send` frames each message of each file as it is and prints its ACK: the shipped
/// examples are accepted, a file with other delimiters and line endings too, and a message the
/// server refuses makes the run fail and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delivers_files_of_messages_and_prints_each_ack() {
    let app = crate::hl7v2::spawn_mllp(Backend::Sqlite).await;
    let mllp = format!("127.0.0.1:{}", app.mllp.unwrap());
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hl7v2");
    let mut files: Vec<String> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hl7"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    let run = move |files: Vec<String>, mllp: String| {
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["send", "--mllp", &mllp];
            args.extend(files.iter().map(String::as_str));
            emrsync(&args, &[])
        })
    };
    let (ok, out, err) = run(files.clone(), mllp.clone()).await.unwrap();
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("2 sent, 2 accepted") && out.contains("EX-ORU-1 AA"),
        "{out}"
    );
    let results = crate::hl7v2::found(&app.get("Observation?code=http://loinc.org|2345-7").await);
    assert_eq!(results.len(), 1, "the example's glucose is stored");

    // other delimiters, \r\n endings, two messages in one file, one of them refused (AR)
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.hl7");
    let other = crate::hl7v2::adt("A01", "MIX1", "MRN-MIX", "V-MIX", "Mixed")
        .replace('|', "#")
        .replace('\r', "\r\n");
    std::fs::write(
        &file,
        format!("{other}MSH|^~\\&|X|Y|||20261204||ZZZ^Z01|MIX2|P|2.5\n"),
    )
    .unwrap();
    let (ok, out, _) = run(vec![file.display().to_string()], mllp).await.unwrap();
    assert!(!ok, "{out}");
    assert!(out.contains("MIX1 AA") && out.contains("MIX2 AR"), "{out}");
    assert!(out.contains("2 sent, 1 accepted"), "{out}");
    assert_eq!(crate::hl7v2::patient(&app, "MRN-MIX").await.len(), 1);
}
