//! The consumer example (`examples/stream-consumer/load_sqlite.py`, the NATS project's Python
//! client) loads the stream into an analytics table: each change once, each resource's newest
//! version, and a second run goes on from where the first stopped.

use crate::clients_more::run;
use crate::event_stream::{Nats, outbox, with_stream};
use crate::helpers::{Backend, TestApp};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::json;

fn python() -> String {
    std::env::var("EMRSYNC_TEST_PYTHON").expect(
        "EMRSYNC_TEST_PYTHON is not set: run the suite with scripts/test, which makes the venv",
    )
}

/// Run the example until no event comes for half a second: how many it loaded.
async fn load(nats: &Nats, db: &std::path::Path) -> u64 {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/stream-consumer/load_sqlite.py"
    );
    let mut cmd = std::process::Command::new(python());
    cmd.args([
        script, "--nats", &nats.url, "--once", "--wait", "0.5", "--db",
    ])
    .arg(db);
    let out = tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .unwrap();
    out["loaded"].as_u64().unwrap()
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Event {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Latest {
    #[diesel(sql_type = Text)]
    resource_id: String,
    #[diesel(sql_type = BigInt)]
    version_id: i64,
    #[diesel(sql_type = BigInt)]
    deleted: i64,
}

fn table(db: &std::path::Path) -> (Vec<i64>, Vec<Latest>) {
    let mut c = diesel::SqliteConnection::establish(db.to_str().unwrap()).unwrap();
    let events: Vec<Event> = diesel::sql_query("SELECT id FROM events ORDER BY id")
        .load(&mut c)
        .unwrap();
    let latest: Vec<Latest> = diesel::sql_query(
        "SELECT resource_id, version_id, deleted FROM latest WHERE resource_type = 'Observation' \
         ORDER BY resource_id",
    )
    .load(&mut c)
    .unwrap();
    (events.into_iter().map(|e| e.id).collect(), latest)
}

/// Every outbox position, once the stream holds them all.
async fn published(nats: &Nats, app: &TestApp) -> Vec<i64> {
    let seqs: Vec<i64> = outbox(app).into_iter().map(|(s, _)| s).collect();
    nats.events("EMRSYNC", seqs.len() as u64).await;
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_consumer_loads_each_change_once_and_resumes() {
    let nats = Nats::start().await;
    let app = with_stream(Backend::Sqlite, nats.url.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("analytics.db");

    let (pat, _) = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Analytics"}]}))
        .await;
    let obs = |code: &str, value: f64| {
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{pat}")},
            "valueQuantity": {"value": value, "unit": "mg/dL"}})
    };
    let (a, _) = app.create(&obs("2345-7", 95.0)).await;
    let (b, _) = app.create(&obs("2345-7", 180.0)).await;
    let mut corrected = obs("2345-7", 108.0);
    corrected["id"] = json!(b);
    assert_eq!(
        app.put(&format!("Observation/{b}"), &corrected)
            .await
            .status,
        200
    );
    assert_eq!(app.delete(&format!("Observation/{a}")).await.status, 200);
    let seqs = published(&nats, &app).await;

    assert_eq!(load(&nats, &db).await, seqs.len() as u64);
    let (events, latest) = table(&db);
    assert_eq!(events, seqs, "each change once, by its outbox position");
    let mut want = vec![
        Latest {
            resource_id: a.clone(),
            version_id: 2,
            deleted: 1,
        },
        Latest {
            resource_id: b.clone(),
            version_id: 2,
            deleted: 0,
        },
    ];
    want.sort_by(|x, y| x.resource_id.cmp(&y.resource_id));
    assert_eq!(latest, want);

    // nothing new: nothing loaded; new changes: only they
    assert_eq!(load(&nats, &db).await, 0);
    app.create(&obs("718-7", 13.5)).await;
    let seqs = published(&nats, &app).await;
    assert_eq!(load(&nats, &db).await, 1);
    assert_eq!(table(&db).0, seqs);
}
