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
