//! The embedded database encrypted at rest (SQLCipher under the operator's master key): what
//! is on disk gives nothing away, a database kept in clear is encrypted at the first start with
//! a key, a missing or wrong key is named as such, and `emrsync rekey` moves everything to a
//! new key, the secrets sealed in PostgreSQL included.

use crate::helpers::{Backend, mint_sealed, spawn_with};
use crate::process::{self, Server};
use diesel::prelude::*;
use emrsync::config::StoreArgs;
use emrsync::store::seal::Seal;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A master key file (base64 of 32 random bytes, as `openssl rand -base64 32` writes one).
fn key_file(dir: &Path, name: &str) -> PathBuf {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    let path = dir.join(name);
    std::fs::write(
        &path,
        base64::engine::general_purpose::STANDARD.encode(bytes),
    )
    .unwrap();
    path
}

fn store(data: &Path, key: Option<&Path>) -> StoreArgs {
    let mut s = StoreArgs::new(data.to_path_buf(), None);
    s.master_key_file = key.map(Path::to_path_buf);
    s
}

/// Every file of the database (with its log) that holds `text`.
fn files_holding(data: &Path, text: &str) -> Vec<String> {
    std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let bytes = std::fs::read(p).unwrap_or_default();
            bytes.windows(text.len()).any(|w| w == text.as_bytes())
        })
        .map(|p| p.display().to_string())
        .collect()
}

/// `emrsync <args>` on `data`, with `key` as its master key: (succeeded, what it said).
fn emrsync(data: &Path, key: Option<&Path>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_emrsync"));
    cmd.args(args)
        .env("EMRSYNC_DATA_DIR", data)
        .env_remove("DATABASE_URL")
        .env_remove("EMRSYNC_MASTER_KEY")
        .env("RUST_BACKTRACE", "0");
    if let Some(key) = key {
        cmd.arg("--master-key-file").arg(key);
    }
    let out = cmd.output().expect("run emrsync");
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said.into_owned())
}

/// `emrsync serve` on `data` with `key`, once it answers.
async fn serve(data: &Path, key: &Path, mllp: u16) -> (Server, reqwest::Client) {
    let port = process::free_port();
    let server = process::start(
        port,
        &store(data, None),
        &[
            "--master-key-file",
            key.to_str().unwrap(),
            "--mllp",
            &format!("127.0.0.1:{mllp}"),
        ],
    );
    let http = reqwest::Client::new();
    process::wait_healthy(&http, &server.root).await;
    (server, http)
}

async fn search(http: &reqwest::Client, server: &Server, token: &str, query: &str) -> usize {
    let r = http
        .get(format!("{}/fhir/{query}", server.root))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bundle: serde_json::Value = r.json().await.unwrap();
    bundle["entry"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_database_is_encrypted_under_the_master_key_and_rekeyed() {
    let keys = tempfile::tempdir().unwrap();
    let (key1, key2) = (key_file(keys.path(), "one"), key_file(keys.path(), "two"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let patient =
        |name: &str| serde_json::json!({"resourceType": "Patient", "name": [{"family": name}]});

    // kept in clear first (no master key): the name is there for anyone to read
    let port = process::free_port();
    let plain = process::start(port, &store(data, None), &[]);
    let http = reqwest::Client::new();
    process::wait_healthy(&http, &plain.root).await;
    let database = store(data, None).database().unwrap();
    let token = mint_sealed(
        &database,
        &format!("{}/fhir", plain.root),
        "system/*.cruds",
        None,
        None,
    );
    let r = http
        .post(format!("{}/fhir/Patient", plain.root))
        .bearer_auth(&token)
        .json(&patient("Cleartextname"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    drop(plain); // killed, as a crash would
    assert!(!files_holding(data, "Cleartextname").is_empty());

    // the first start with a master key encrypts it, and everything is still there
    let mllp = process::free_port();
    let (server, http) = serve(data, &key1, mllp).await;
    let one = store(data, Some(&key1));
    let token = mint_sealed(
        &one.database().unwrap(),
        &format!("{}/fhir", server.root),
        "system/*.cruds",
        None,
        one.seal().unwrap().as_ref(),
    );
    assert_eq!(
        search(&http, &server, &token, "Patient?name=Cleartextname").await,
        1
    );
    let r = http
        .post(format!("{}/fhir/Patient", server.root))
        .bearer_auth(&token)
        .json(&patient("Cipheredname"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut sender = crate::mllp_client::Mllp::connect(mllp).await;
    let message = crate::hl7v2::adt("A01", "CIPHER1", "MRN881", "V881", "Archivedname");
    assert_eq!(sender.send(&message).await.code(), "AA");
    // a rotation while a server has the database open is refused, and changes nothing
    let (ok, said) = emrsync(
        data,
        Some(&key1),
        &["rekey", "--new-master-key-file", key2.to_str().unwrap()],
    );
    assert!(!ok && said.contains("in use by another process"), "{said}");
    drop(server);

    // on disk: no header, no name, in the database or its log
    let header = std::fs::read(data.join("emrsync.db")).unwrap();
    assert_ne!(&header[..16], b"SQLite format 3\0");
    for name in ["Cleartextname", "Cipheredname", "Archivedname", "MRN881"] {
        assert_eq!(files_holding(data, name), Vec::<String>::new(), "{name}");
    }
    // a missing or a wrong key is named as such
    let (ok, said) = emrsync(data, None, &["migrate"]);
    assert!(
        !ok && said.contains("is encrypted: give its master key"),
        "{said}"
    );
    let (ok, said) = emrsync(data, Some(&key2), &["migrate"]);
    assert!(
        !ok && said.contains("does not open with this master key"),
        "{said}"
    );

    // rotation: to the second key, and a second run finds nothing left to do
    let rekey = ["rekey", "--new-master-key-file", key2.to_str().unwrap()];
    let (ok, said) = emrsync(data, Some(&key1), &rekey);
    assert!(
        ok && said.contains("file rewritten") && said.contains("1 archived message"),
        "{said}"
    );
    let (ok, said) = emrsync(data, Some(&key1), &rekey);
    assert!(
        ok && !said.contains("file rewritten") && said.contains("0 archived"),
        "{said}"
    );
    let (ok, said) = emrsync(data, Some(&key1), &["migrate"]);
    assert!(
        !ok && said.contains("does not open with this master key"),
        "{said}"
    );

    // the new key opens all of it: resources, the signing key and the sealed archive
    let (server, http) = serve(data, &key2, process::free_port()).await;
    let two = store(data, Some(&key2));
    let seal: Seal = two.seal().unwrap().unwrap();
    let base = format!("{}/fhir", server.root);
    let token = mint_sealed(
        &two.database().unwrap(),
        &base,
        "system/*.cruds",
        None,
        Some(&seal),
    );
    assert_eq!(
        search(
            &http,
            &server,
            &token,
            "Patient?name=Cleartextname,Cipheredname"
        )
        .await,
        2
    );
    use emrsync::store::schema::hl7v2_messages as m;
    let id: String = m::table
        .filter(m::control_id.eq("CIPHER1"))
        .select(m::id)
        .get_result(&mut two.database().unwrap().connect().unwrap())
        .unwrap();
    let r = http
        .get(format!("{}/admin/hl7v2/messages/{id}", server.root))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let shown: serde_json::Value = r.json().await.unwrap();
    assert!(
        shown["raw"].as_str().unwrap().contains("Archivedname"),
        "{shown}"
    );
}

/// On PostgreSQL the rotation reseals what the database keeps sealed (its disks are the
/// database server's to encrypt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_reseals_what_postgres_keeps_under_the_new_key() {
    let keys = tempfile::tempdir().unwrap();
    let (key1, key2) = (key_file(keys.path(), "one"), key_file(keys.path(), "two"));
    let app = spawn_with(Backend::Postgres, |s| {
        s.store.master_key_file = Some(key1.clone());
        s.mllp = Some("127.0.0.1:0".into());
    })
    .await;
    let hook = crate::receiver::Receiver::start().await;
    let sub = crate::subscriptions::subscription("patient-demographics", &[], &hook.url, "id-only");
    app.create(&sub).await;
    let mut sender = crate::mllp_client::Mllp::connect(app.mllp.unwrap()).await;
    for n in 0..3 {
        let message = crate::hl7v2::adt(
            "A01",
            &format!("ROT{n}"),
            &format!("MRN7{n}"),
            "V1",
            "Rotated",
        );
        assert_eq!(sender.send(&message).await.code(), "AA");
    }
    let old = Seal::from_file_or_env(Some(&key1), "-").unwrap().unwrap();
    let new = Seal::from_file_or_env(Some(&key2), "-").unwrap().unwrap();

    let rotated = emrsync::rekey::rotate(&app.database, &old, &new).unwrap();
    assert_eq!(
        rotated,
        emrsync::rekey::Rotated {
            file_rewritten: false,
            signing_keys: 1,
            channel_headers: 1,
            archived_messages: 3,
        }
    );
    use emrsync::store::schema::{auth_signing_keys as k, hl7v2_messages as m, subscriptions as s};
    let mut conn = app.db();
    let raws: Vec<String> = m::table.select(m::raw).load(&mut conn).unwrap();
    let archive = emrsync::adapters::hl7v2::ingest::ARCHIVE_SEALED_AS;
    for raw in &raws {
        let text = String::from_utf8(new.open(archive, raw).unwrap()).unwrap();
        assert!(text.contains("Rotated"), "{text}");
        assert!(old.open(archive, raw).is_err());
    }
    let headers: String = s::table.select(s::headers).get_result(&mut conn).unwrap();
    let opened = new
        .open(
            emrsync::subscriptions::registry::HEADERS_SEALED_AS,
            &headers,
        )
        .unwrap();
    assert!(
        String::from_utf8(opened)
            .unwrap()
            .contains("receiver-secret")
    );
    let signing: String = k::table
        .select(k::private_pkcs8)
        .get_result(&mut conn)
        .unwrap();
    assert!(new.open(emrsync::auth::keys::SEALED_AS, &signing).is_ok());
    // the new key signs tokens; the old one opens nothing any more
    let mint = emrsync::auth::Mint {
        scope: "system/*.rs".into(),
        lifetime: std::time::Duration::from_secs(60),
        ..Default::default()
    };
    assert!(emrsync::auth::mint_offline(&app.database, &app.base, &mint, Some(&old)).is_err());
    assert!(emrsync::auth::mint_offline(&app.database, &app.base, &mint, Some(&new)).is_ok());
    // run again, it finds nothing to do
    let again = emrsync::rekey::rotate(&app.database, &old, &new).unwrap();
    assert_eq!(again, emrsync::rekey::Rotated::default());
}
