//! What is on disk is the owner's alone, and the database holds no key to forge tokens with:
//! its files are 0600, and with the operator's master key the signing keys are sealed (a
//! copy of the database alone mints nothing the server accepts).

use crate::helpers::{Backend, spawn_with};
use diesel::prelude::*;
use emrsync::auth::Mint;
use emrsync::store::schema::auth_signing_keys;
use emrsync::store::seal::Seal;
use std::os::unix::fs::PermissionsExt;

fn mint() -> Mint {
    Mint {
        subject: "forger".into(),
        scope: "system/*.cruds".into(),
        lifetime: std::time::Duration::from_secs(600),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_files_are_the_owners_alone() {
    let app = spawn_with(Backend::Sqlite, |_| {}).await;
    app.create(&serde_json::json!({"resourceType": "Patient"}))
        .await;
    let db = app.dir.path().join("emrsync.db");
    for file in [db.clone(), db.with_extension("db-wal")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_master_key_the_signing_keys_are_sealed() {
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("master.key");
    // 32 random bytes, base64, as `openssl rand -base64 32` writes them
    let secret = emrsync::auth::secret::random_token();
    let key_text = base64_of_32(&secret);
    std::fs::write(&key_file, &key_text).unwrap();
    let seal = Seal::from_base64(&key_text).unwrap();
    let app = spawn_with(Backend::Sqlite, |s| {
        s.store.master_key_file = Some(key_file.clone());
    })
    .await;
    let stored: Vec<String> = auth_signing_keys::table
        .select(auth_signing_keys::private_pkcs8)
        .load(&mut app.db())
        .unwrap();
    assert!(!stored.is_empty());
    assert!(
        stored.iter().all(|k| k.starts_with("sealed:v1:")),
        "{stored:?}"
    );

    // the database alone mints nothing: the key it holds is sealed
    let err = emrsync::auth::mint_offline(&app.database, &app.base, &mint(), None).unwrap_err();
    assert!(err.to_string().contains("master key"), "{err}");
    // with the master key, `emrsync token` works as before
    let token =
        emrsync::auth::mint_offline(&app.database, &app.base, &mint(), Some(&seal)).unwrap();
    assert_eq!(app.get_as(&token, "Patient").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_kept_unsealed_before_are_sealed_when_a_master_key_comes() {
    // first started without a master key
    let dir = tempfile::tempdir().unwrap();
    let store = emrsync::config::StoreArgs::new(dir.path().to_path_buf(), None);
    let database = store.database().unwrap();
    let before = emrsync::auth::mint_offline(&database, "http://h/fhir", &mint(), None).unwrap();
    let plain: String = auth_signing_keys::table
        .select(auth_signing_keys::private_pkcs8)
        .get_result(&mut database.connect().unwrap())
        .unwrap();
    assert!(!plain.starts_with("sealed:"));
    // then with one: the same key, sealed, signs on
    let seal = Seal::from_base64(&base64_of_32("another-secret")).unwrap();
    let after =
        emrsync::auth::mint_offline(&database, "http://h/fhir", &mint(), Some(&seal)).unwrap();
    let sealed: String = auth_signing_keys::table
        .select(auth_signing_keys::private_pkcs8)
        .get_result(&mut database.connect().unwrap())
        .unwrap();
    assert!(sealed.starts_with("sealed:v1:"));
    let kid = |t: &str| emrsync::auth::token::key_id(t).unwrap();
    assert_eq!(kid(&before), kid(&after), "the same key, now sealed");
    // and a wrong master key opens nothing
    let wrong = Seal::from_base64(&base64_of_32("wrong")).unwrap();
    assert!(
        emrsync::auth::mint_offline(&database, "http://h/fhir", &mint(), Some(&wrong)).is_err()
    );
}

/// base64 of 32 bytes derived from `text` (a test's stand-in for `openssl rand -base64 32`).
fn base64_of_32(text: &str) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// `user add` and `client add` take secrets from a file, the environment or a prompt, never
/// from a flag (a flag is in the process list for every local user to read).
#[test]
fn secrets_are_never_flags() {
    let dir = tempfile::tempdir().unwrap();
    let emrsync = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_emrsync"));
        cmd.args(args)
            .env("EMRSYNC_DATA_DIR", dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("EMRSYNC_USER_PASSWORD")
            .env_remove("EMRSYNC_CLIENT_SECRET")
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run emrsync")
    };
    let user = [
        "user",
        "add",
        "--username",
        "nurse",
        "--fhir-user",
        "Practitioner/n1",
    ];
    // a flag is refused; with no terminal and nothing given, it says where to give it
    let out = emrsync(&[&user[..], &["--password", "p"]].concat(), &[]);
    assert!(!out.status.success());
    let out = emrsync(&user, &[]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(said.contains("EMRSYNC_USER_PASSWORD"), "{said}");
    // from a file, and from the environment
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "s3cret-from-a-file\n").unwrap();
    let file = password_file.to_str().unwrap();
    let out = emrsync(&[&user[..], &["--password-file", file]].concat(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = [
        "client",
        "add",
        "--id",
        "payer",
        "--kind",
        "symmetric",
        "--scope",
        "system/*.rs",
    ];
    let out = emrsync(
        &client,
        &[("EMRSYNC_CLIENT_SECRET", "a-secret-from-the-environment")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // what was given is what is checked
    let store = emrsync::config::StoreArgs::new(dir.path().to_path_buf(), None);
    let mut conn = store.database().unwrap().connect().unwrap();
    let user = emrsync::auth::users::sign_in(&mut conn, "nurse", "s3cret-from-a-file").unwrap();
    assert!(user.is_some());
    let client = emrsync::auth::clients::find(&mut conn, "payer")
        .unwrap()
        .unwrap();
    assert!(client.secret_matches("a-secret-from-the-environment"));
}

/// A subscriber's channel headers carry its credentials: with a master key they are stored
/// sealed, and each delivery opens them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_headers_are_sealed_and_still_sent() {
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("master.key");
    std::fs::write(&key_file, base64_of_32("headers")).unwrap();
    let app = spawn_with(Backend::Postgres, |s| {
        s.store.master_key_file = Some(key_file.clone());
    })
    .await;
    let hook = crate::receiver::Receiver::start().await;
    let sub = crate::subscriptions::subscription("patient-demographics", &[], &hook.url, "id-only");
    app.create(&sub).await;
    hook.wait_until(10, "the handshake", |g| !g.is_empty())
        .await;
    assert_eq!(
        hook.received()[0].authorization.as_deref(),
        Some("Bearer receiver-secret")
    );
    let stored: Vec<String> = emrsync::store::schema::subscriptions::table
        .select(emrsync::store::schema::subscriptions::headers)
        .load(&mut app.db())
        .unwrap();
    assert!(stored[0].starts_with("sealed:v1:"), "{stored:?}");
    assert!(!stored[0].contains("receiver-secret"));
}

/// The HL7v2 archive keeps every message for months: with a master key its text is sealed,
/// and the exception queue still shows and replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hl7v2_archive_is_sealed_and_still_replayable() {
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("master.key");
    std::fs::write(&key_file, base64_of_32("archive")).unwrap();
    let app = spawn_with(Backend::Postgres, |s| {
        s.store.master_key_file = Some(key_file.clone());
        s.mllp = Some("127.0.0.1:0".into());
    })
    .await;
    let mut mllp = crate::mllp_client::Mllp::connect(app.mllp.unwrap()).await;
    let message = crate::hl7v2::adt("A01", "SEAL1", "MRN907", "V907", "Sealedname");
    assert_eq!(mllp.send(&message).await.code(), "AA");
    use emrsync::store::schema::hl7v2_messages as m;
    let (id, raw): (String, String) = m::table
        .filter(m::control_id.eq("SEAL1"))
        .select((m::id, m::raw))
        .get_result(&mut app.db())
        .unwrap();
    assert!(raw.starts_with("sealed:v1:"), "{raw}");
    assert!(!raw.contains("Sealedname"));
    // the integration team reads it as it came, and can replay it
    let admin = |path: String| {
        app.client
            .get(format!("{}/admin/hl7v2/messages/{path}", app.root))
    };
    let r = app.send(admin(id.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["raw"].as_str().unwrap().contains("Sealedname"));
    let r = app
        .send(
            app.client
                .post(format!("{}/admin/hl7v2/messages/{id}/replay", app.root)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["code"], "AA");
}
