//! How the audit trail is kept (issue 24, `src/store/audit/`): its blocks paged through newest
//! first, the rows of the trail before blocks converted, and retention forgetting old blocks
//! while the chain goes on.

use crate::audit::{spawn, unsealed};
use crate::helpers::Backend;
use emrsync::store::audit;
use serde_json::{Value, json};
use std::time::Duration;

/// A client pages through a patient's trail two AuditEvents a page (`next` links): each once,
/// newest first, across the blocks of several flushes; a cursor that is not an id is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trail_pages_newest_first_across_blocks() {
    let app = spawn(Backend::Sqlite).await;
    let (pid, _) = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Paged"}]}))
        .await;
    // seven reads, a flush (50 ms) apart: blocks of their own
    for _ in 0..7 {
        assert_eq!(app.get(&format!("Patient/{pid}")).await.status, 200);
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    let token = app.token_for("system/AuditEvent.rs", None);
    let all = crate::audit::trail(&app, &token, &format!("patient={pid}&subtype=read"), |e| {
        e.len() == 7
    })
    .await;
    assert_eq!(all.len(), 7);
    let mut url = format!("AuditEvent?patient={pid}&subtype=read&_count=2");
    let mut paged: Vec<Value> = Vec::new();
    for _ in 0..10 {
        let r = app.send_as(&token, reqwest::Method::GET, &url, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.json();
        let entries = page["entry"].as_array().cloned().unwrap_or_default();
        assert!(entries.len() <= 2);
        paged.extend(entries.into_iter().map(|e| e["resource"].clone()));
        match crate::history::next_link(&page) {
            Some(n) => url = n.split_once("/fhir/").unwrap().1.to_string(),
            None => break,
        }
    }
    let ids: Vec<&str> = paged.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let expected: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected, "each once, in the order of one page of all");
    let times: Vec<&str> = paged
        .iter()
        .map(|e| e["recorded"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let blocks: std::collections::HashSet<&str> =
        ids.iter().map(|id| id.split('-').next().unwrap()).collect();
    assert!(blocks.len() >= 3, "across blocks: {ids:?}");
    // an entry is read by its id; a cursor or id that is not one is told, not guessed
    let one = app
        .send_as(
            &token,
            reqwest::Method::GET,
            &format!("AuditEvent/{}", ids[3]),
            None,
        )
        .await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.json()["id"], ids[3]);
    let bad = app
        .send_as(
            &token,
            reqwest::Method::GET,
            "AuditEvent?_before=yesterday",
            None,
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.json()["resourceType"], "OperationOutcome");
    let missing = app
        .send_as(&token, reqwest::Method::GET, "AuditEvent/99999-0", None)
        .await;
    assert_eq!(missing.status, 404);
}

/// Rows kept one per access before the trail was kept in blocks (migration 000040) become
/// blocks, found by patient and entity, their old chain checked and the result recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_from_before_the_blocks_are_found_once_converted() {
    use diesel::prelude::*;
    use emrsync::store::schema::audit_events as a;
    let app = spawn(Backend::Sqlite).await;
    let mut conn = app.db();
    diesel::insert_into(a::table)
        .values((
            a::recorded_at.eq(emrsync::fhir::resource::now_micros()),
            a::actor.eq("client old"),
            a::action.eq("read"),
            a::resource_type.eq("Observation"),
            a::resource_id.eq("o-old"),
            a::outcome.eq("success"),
            a::correlation_id.eq("old-read"),
            a::patient.eq("Patient/p-old"),
        ))
        .execute(&mut conn)
        .unwrap();
    let token = app.token_for("system/AuditEvent.rs", None);
    let found = |q: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            let r = app
                .send_as(
                    &token,
                    reqwest::Method::GET,
                    &format!("AuditEvent?{q}"),
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.json()["entry"].as_array().cloned().unwrap_or_default()
        }
    };
    // (the searches are audited too, by patient: only the old read is counted)
    assert_eq!(found("patient=Patient/p-old&subtype=read").await.len(), 0);
    assert_eq!(audit::convert(&mut conn).unwrap(), 1);
    let left: i64 = a::table.count().get_result(&mut conn).unwrap();
    assert_eq!(left, 0, "the rows are gone once in blocks");
    assert_eq!(found("patient=Patient/p-old&subtype=read").await.len(), 1);
    assert_eq!(found("entity=Observation/o-old").await.len(), 1);
    assert_eq!(found("entity=Observation/other").await.len(), 0);
    // the conversion says what it did in the trail itself
    let note = found("subtype=audit-convert").await;
    assert_eq!(note.len(), 1);
    let detail = note[0]["resource"]["outcomeDesc"].as_str().unwrap();
    assert!(
        detail.starts_with("1 rows of the per-row trail kept as blocks"),
        "{detail}"
    );
}

/// Retention forgets the blocks older than it keeps, with what found them, but the chain's
/// head (the chain goes on from it), and what is left still verifies, the blocks sealed after
/// it included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_forgets_old_blocks_and_the_rest_still_verifies() {
    use diesel::prelude::*;
    use emrsync::fhir::resource::now_micros;
    use emrsync::ops::retention::{Retention, sweep};
    use emrsync::store::schema::{audit_blocks as b, audit_postings as p};
    const DAY: i64 = 86_400 * 1_000_000;
    let app = spawn(Backend::Sqlite).await;
    let (pid, _) = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Kept"}]}))
        .await;
    app.get(&format!("Patient/{pid}")).await;
    let mut conn = app.db();
    // the read is flushed and the create's block sealed
    for _ in 0..100 {
        if unsealed(&mut conn) == 0 && audit::all(&mut conn).unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = audit::verify(&mut conn).unwrap();
    assert!(
        before.blocks >= 2 && before.problems.is_empty(),
        "{before:?}"
    );

    let store = app.store();
    let keep_a_day = Retention {
        hl7v2_archive_days: 0,
        event_days: 0,
        audit_days: 1,
        stream: false,
    };
    assert_eq!(
        sweep(&store, keep_a_day, now_micros())
            .unwrap()
            .audit_events,
        0
    );
    let swept = sweep(&store, keep_a_day, now_micros() + 2 * DAY).unwrap();
    let kept: Vec<(i64, i64)> = b::table
        .select((b::seq, b::chain_pos.assume_not_null()))
        .load(&mut conn)
        .unwrap();
    assert_eq!(kept.len(), 1, "the head alone is kept");
    assert_eq!(kept[0].1, before.last.unwrap());
    let left = audit::all(&mut conn).unwrap().len() as i64;
    assert!(swept.audit_events > 0, "{swept:?}");
    assert_eq!(swept.audit_events as i64 + left, before.rows, "{swept:?}");
    let other_postings: i64 = p::table
        .filter(p::block.ne(kept[0].0))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(other_postings, 0, "nothing left of the old blocks");

    // the chain goes on from where it was, and what is kept verifies
    app.get(&format!("Patient/{pid}")).await;
    let mut after = audit::verify(&mut conn).unwrap();
    for _ in 0..100 {
        if after.blocks > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = audit::verify(&mut conn).unwrap();
    }
    assert!(after.problems.is_empty(), "{after:?}");
    assert_eq!(after.first, before.last, "{after:?}");
    assert!(after.last.unwrap() > before.last.unwrap(), "{after:?}");
}

/// A flush's blocks are posted a run at a time: until then a search reads them whole. A run
/// lost with its server (the blocks stored, their postings never written) is found by searches
/// all the same, and posted by the next server to start on the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_postings_lost_at_a_stop_is_found_and_posted_at_the_next_start() {
    use diesel::prelude::*;
    use emrsync::store::schema::{audit_blocks as b, audit_postings as p};
    let app = spawn(Backend::Sqlite).await;
    let (pid, _) = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Unposted"}]}))
        .await;
    for _ in 0..3 {
        assert_eq!(app.get(&format!("Patient/{pid}")).await.status, 200);
    }
    let mut conn = app.db();
    let unposted = |conn: &mut emrsync::store::DbConnection| -> Vec<i64> {
        b::table
            .filter(b::posted.eq(false))
            .select(b::seq)
            .load(conn)
            .unwrap()
    };
    let reads = |conn: &mut emrsync::store::DbConnection| -> Vec<i64> {
        let pattern = format!("%\"action\":\"read\"%{pid}%");
        b::table
            .filter(b::body.like(pattern))
            .select(b::seq)
            .load(conn)
            .unwrap()
    };
    // stored within a flush, posted within a run (two seconds)
    for _ in 0..100 {
        if !reads(&mut conn).is_empty()
            && unposted(&mut conn).is_empty()
            && unsealed(&mut conn) == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let blocks = reads(&mut conn);
    assert!(!blocks.is_empty(), "the reads are in the trail");
    assert_eq!(unposted(&mut conn), Vec::<i64>::new(), "a run posts them");

    // as if the server had stopped before its run: the blocks kept, their postings not
    diesel::update(b::table.filter(b::seq.eq_any(&blocks)))
        .set(b::posted.eq(false))
        .execute(&mut conn)
        .unwrap();
    diesel::delete(p::table.filter(p::block.eq_any(&blocks)))
        .execute(&mut conn)
        .unwrap();
    let token = app.token_for("system/AuditEvent.rs", None);
    let query = format!("patient={pid}&subtype=read");
    let found = crate::audit::trail(&app, &token, &query, |e| e.len() == 3).await;
    assert_eq!(found.len(), 3, "found unposted: {found:?}");
    let checked = audit::verify(&mut conn).unwrap();
    assert!(checked.problems.is_empty(), "{checked:?}");

    // the next server on the database posts them at its start (this one owes them nothing)
    let dir = app.dir.path().to_path_buf();
    let _next = crate::helpers::spawn_with(Backend::Sqlite, move |s| {
        s.store = emrsync::config::StoreArgs::new(dir, None)
    })
    .await;
    for _ in 0..100 {
        if unposted(&mut conn).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        unposted(&mut conn),
        Vec::<i64>::new(),
        "posted at the start"
    );
    let postings: i64 = p::table
        .filter(p::block.eq_any(&blocks))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert!(postings > 0);
    let checked = audit::verify(&mut conn).unwrap();
    assert!(checked.problems.is_empty(), "{checked:?}");
    let found = crate::audit::trail(&app, &token, &query, |e| e.len() == 3).await;
    assert_eq!(found.len(), 3, "found by their postings: {found:?}");
}

/// Blocks stored but not posted yet (a run posts them within two seconds).
pub fn unposted(c: &mut emrsync::store::DbConnection) -> i64 {
    use diesel::prelude::*;
    use emrsync::store::schema::audit_blocks as b;
    b::table
        .filter(b::posted.eq(false))
        .count()
        .get_result(c)
        .unwrap()
}
