//! The retention sweep forgets only what it may: applied HL7v2 messages, delivered events and
//! dispatched outbox rows older than their retention; never a message waiting in the
//! exception queue, an event not yet delivered, or a resource version.

use crate::helpers::TestApp;
use crate::hl7v2::{adt, patient, spawn_mllp};
use crate::mllp_client::Mllp;
use crate::receiver::{Receiver, event_numbers};
use crate::subscriptions::subscription;
use diesel::prelude::*;
use emrsync::fhir::resource::now_micros;
use emrsync::ops::retention::{Retention, Swept, sweep};
use emrsync::store::schema::{hl7v2_messages, outbox, subscription_events};

const DAY: i64 = 86_400 * 1_000_000;

async fn the_sweep_forgets_only_what_it_may(app: TestApp) {
    let up = Receiver::start().await;
    let down = Receiver::start().await;
    down.set_down(true);
    let (up_id, _) = app
        .create(&subscription(
            "patient-demographics",
            &[],
            &up.url,
            "id-only",
        ))
        .await;
    let (down_id, _) = app
        .create(&subscription(
            "patient-demographics",
            &[],
            &down.url,
            "id-only",
        ))
        .await;
    up.wait_until(10, "the handshake", |g| !g.is_empty()).await;
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    assert_eq!(
        mllp.send(&adt("A01", "K1", "MRN-RET", "V-RET", "Kept"))
            .await
            .code(),
        "AA"
    );
    let failing = adt("A01", "K2", "", "V-RET2", "Failing")
        .replace("^^^GH&1.2.840.114350.1&ISO^MR~123-45-6789^^^SSA^SS", "");
    assert_eq!(mllp.send(&failing).await.code(), "AE");
    assert_eq!(
        mllp.send(&adt("A08", "K3", "MRN-RET", "V-RET", "Kept-Again"))
            .await
            .code(),
        "AA"
    );
    up.wait_until(10, "both events", |g| {
        let n: Vec<i64> = g.iter().flat_map(|r| event_numbers(&r.body)).collect();
        n.contains(&1) && n.contains(&2)
    })
    .await;

    let store = app.store();
    let keep_a_day = Retention {
        hl7v2_archive_days: 1,
        event_days: 1,
        audit_days: 0,
        stream: false,
    };
    assert_eq!(
        sweep(&store, keep_a_day, now_micros()).unwrap(),
        Swept::default(),
        "nothing is a day old yet"
    );
    let swept = sweep(&store, keep_a_day, now_micros() + 2 * DAY).unwrap();
    assert_eq!(swept.hl7v2_messages, 2, "{swept:?}");
    assert_eq!(swept.subscription_events, 2, "{swept:?}");
    assert!(swept.outbox >= 2, "{swept:?}");

    let mut db = app.db();
    let left: Vec<String> = hl7v2_messages::table
        .select(hl7v2_messages::status)
        .load(&mut db)
        .unwrap();
    assert_eq!(left, ["failed"], "the exception queue keeps its message");
    let events = |id: &str, db: &mut emrsync::store::DbConnection| -> i64 {
        subscription_events::table
            .filter(subscription_events::subscription_id.eq(id))
            .count()
            .get_result(db)
            .unwrap()
    };
    assert_eq!(events(&up_id, &mut db), 0, "delivered events forgotten");
    assert_eq!(events(&down_id, &mut db), 2, "undelivered events kept");
    let dispatched: i64 = outbox::table
        .filter(outbox::dispatched_at.is_not_null())
        .count()
        .get_result(&mut db)
        .unwrap();
    assert_eq!(dispatched, 0);
    // the resources and their history are untouched
    let p = patient(&app, "MRN-RET").await;
    assert_eq!(p[0]["meta"]["versionId"], "2");
    let history = app
        .get(&format!(
            "Patient/{}/_history",
            p[0]["id"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(history["entry"].as_array().unwrap().len(), 2);
    // the endpoint back: the kept events arrive, numbered as before
    down.set_down(false);
    down.wait_until(30, "the kept events", |g| {
        let n: Vec<i64> = g.iter().flat_map(|r| event_numbers(&r.body)).collect();
        n.contains(&1) && n.contains(&2)
    })
    .await;
    assert_eq!(
        sweep(&store, keep_a_day, now_micros() + 2 * DAY)
            .unwrap()
            .hl7v2_messages,
        0
    );
}

crate::on_both_backends_with!(spawn_mllp, the_sweep_forgets_only_what_it_may);
