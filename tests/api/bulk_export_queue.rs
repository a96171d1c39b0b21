//! The queue of exports, driven directly on a store with no runner at first so that jobs stay
//! waiting: a client may have so many waiting or running (the next kick-off is refused, the
//! API's 429), another client is not held back by it, a cancel frees a place; once the runner
//! starts, one at a time, every job ends, and one that cannot be carried out (its Group gone
//! since the kick-off) fails with the reason.

use emrsync::auth::Grant;
use emrsync::bulk::{ExportError, ExportRequest, ExportSettings, Exports, Level, Status};
use emrsync::store::{Store, write};
use serde_json::json;
use std::time::Duration;

/// The exports of `store`, one running at a time, two per client.
fn exports_of(store: &Store, dir: &std::path::Path) -> Exports {
    let settings = ExportSettings {
        max_running: 1,
        max_per_client: 2,
        keep: Duration::from_secs(3600),
        per_file: 1000,
    };
    Exports::new(
        store.clone(),
        dir.to_path_buf(),
        "http://localhost/fhir".into(),
        settings,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_wait_their_turn_within_each_clients_limit_and_a_lost_group_fails_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ctx) = crate::helpers::store_in(dir.path());
    let put = |rtype: &str, id: &str, body: serde_json::Value| {
        crate::helpers::put_in(&store, &ctx, rtype, id, body)
    };
    put(
        "Patient",
        "p1",
        json!({"resourceType": "Patient", "id": "p1"}),
    );
    put(
        "Group",
        "g1",
        json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
            "member": [{"entity": {"reference": "Patient/p1"}}]}),
    );
    let exports = exports_of(&store, dir.path());
    let payer = Grant::stored("payer", "system/*.rs", None);
    let other = Grant::stored("hie", "system/*.rs", None);
    let system = ExportRequest::parse(Level::System, &[], false).unwrap();
    let group = ExportRequest::parse(Level::Group("g1".into()), &[], false).unwrap();

    let first = exports.kick_off(&payer, &system, "/$export").unwrap();
    let second = exports
        .kick_off(&payer, &group, "/Group/g1/$export")
        .unwrap();
    // a third waits for no one: refused, with what to do
    match exports.kick_off(&payer, &system, "/$export") {
        Err(ExportError::Busy(m)) => assert!(m.contains("cancel"), "{m}"),
        other => panic!("a third export was not refused: {other:?}"),
    }
    // another client has its own places
    let theirs = exports.kick_off(&other, &system, "/$export").unwrap();
    // nor may one client see or cancel another's job
    assert!(matches!(
        exports.status(&other, &first),
        Err(ExportError::NotFound)
    ));
    assert!(matches!(
        exports.cancel(&other, &first),
        Err(ExportError::NotFound)
    ));
    // a cancel frees a place
    exports.cancel(&payer, &first).unwrap();
    let third = exports.kick_off(&payer, &system, "/$export").unwrap();
    assert!(matches!(
        exports.status(&payer, &third),
        Ok(Status::InProgress(_))
    ));

    // the Group goes before its export runs: that export fails and says why
    store
        .write(|tx| write::delete(tx, "Group", "g1", None, &ctx))
        .unwrap();
    let runner = tokio::spawn(exports.clone().run());
    let finished = |grant: &Grant, id: &str| {
        let (exports, grant, id) = (exports.clone(), grant.clone(), id.to_string());
        async move {
            for _ in 0..400 {
                match exports.status(&grant, &id).unwrap() {
                    Status::InProgress(_) => tokio::time::sleep(Duration::from_millis(25)).await,
                    done => return done,
                }
            }
            panic!("export {id} did not end");
        }
    };
    match finished(&payer, &second).await {
        Status::Failed(why) => assert!(why.contains("Group/g1"), "{why}"),
        _ => panic!("the export of a deleted Group did not fail"),
    }
    for (grant, id) in [(&payer, &third), (&other, &theirs)] {
        match finished(grant, id).await {
            Status::Done(manifest) => {
                let types: Vec<&str> = manifest["output"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|o| o["type"].as_str())
                    .collect();
                // the Group is deleted: the Patient alone is left
                assert_eq!(types, ["Patient"], "{manifest}");
            }
            _ => panic!("export {id} did not finish"),
        }
    }
    // the cancelled one is gone
    assert!(matches!(
        exports.status(&payer, &first),
        Err(ExportError::NotFound)
    ));
    runner.abort();
}

/// Two processes on one database: a job taken over from a process thought stopped (silent
/// past the limit) is the new one's; the old one, when it wakes, learns at its heartbeat that
/// it must stop, cannot record the job's end, and leaves the files to the new one.
#[test]
fn a_job_taken_over_from_a_silent_process_is_no_longer_the_first_ones() {
    use emrsync::bulk::jobs;
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = crate::helpers::store_in(dir.path());
    let exports = exports_of(&store, dir.path());
    let payer = Grant::stored("payer", "system/*.rs", None);
    let system = ExportRequest::parse(Level::System, &[], false).unwrap();
    let id = exports.kick_off(&payer, &system, "/$export").unwrap();
    let taken = store
        .write_rows(|c| jobs::take_next(c, "first"))
        .unwrap()
        .unwrap();
    assert_eq!(taken.id, id);
    // "first" falls silent; a second process runs the job again
    let far = emrsync::fhir::resource::now_micros() + 3_600_000_000;
    let again = store
        .write_rows(|c| jobs::requeue(c, Some(far), &[]))
        .unwrap();
    assert_eq!(again, std::slice::from_ref(&id));
    store
        .write_rows(|c| jobs::take_next(c, "second"))
        .unwrap()
        .unwrap();
    let now = emrsync::fhir::resource::now_micros();
    let ids = [id.clone()];
    // "first" wakes: its heartbeat says the job is no longer its own
    let lost = store
        .write_rows(|c| jobs::beat(c, &ids, "first", now))
        .unwrap();
    assert_eq!(lost, ids);
    assert!(
        store
            .write_rows(|c| jobs::beat(c, &ids, "second", now))
            .unwrap()
            .is_empty()
    );
    // nor may it record an end
    assert!(
        !store
            .write_rows(|c| jobs::finish(c, &id, "first", now, "[]", now))
            .unwrap()
    );
    store
        .write_rows(|c| jobs::fail(c, &id, "first", "late", now))
        .unwrap();
    assert!(
        store
            .read(|c| jobs::run_elsewhere(c, &id, "first"))
            .unwrap()
    );
    assert!(matches!(
        exports.status(&payer, &id),
        Ok(Status::InProgress(_))
    ));
    // the second records it
    assert!(
        store
            .write_rows(|c| jobs::finish(c, &id, "second", now, "[]", now))
            .unwrap()
    );
    assert!(matches!(exports.status(&payer, &id), Ok(Status::Done(_))));
}
