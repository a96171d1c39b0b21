//! Topic-based Subscriptions end to end: a subscriber creates a Subscription, a real REST-hook
//! endpoint on loopback receives the handshake and then every matching change, in order,
//! numbered without gaps, including after the endpoint was down for a while.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::receiver::{Receiver, event_numbers, focuses, kind, status_param};
use serde_json::{Value, json};

const TOPIC: &str = "http://emrsync.org/SubscriptionTopic/";
const EXT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";

/// A Backport-profile Subscription to `topic` with `filters`, sent to `endpoint`.
pub fn subscription(topic: &str, filters: &[&str], endpoint: &str, payload: &str) -> Value {
    let mut s = json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "tests",
        "criteria": format!("{TOPIC}{topic}"),
        "_criteria": {"extension": filters.iter().map(|f| json!({
            "url": format!("{EXT}backport-filter-criteria"), "valueString": f
        })).collect::<Vec<_>>()},
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{EXT}backport-payload-content"), "valueCode": payload}]},
            "header": ["Authorization: Bearer receiver-secret"]
        }
    });
    if filters.is_empty() {
        s.as_object_mut().unwrap().remove("_criteria");
    }
    s
}

async fn spawn_fast(backend: Backend) -> TestApp {
    spawn_with(backend, |s| {
        s.subscription_retry_max_secs = 1;
        s.subscription_error_after = 2;
    })
    .await
}

fn encounter(patient: &str, status: &str) -> Value {
    json!({"resourceType":"Encounter","status":status,
        "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},
        "subject":{"reference":format!("Patient/{patient}")}})
}

/// Wait until the Subscription resource shows `status`.
pub async fn wait_status(app: &TestApp, id: &str, status: &str) -> Value {
    for _ in 0..300 {
        let r = app.get(&format!("Subscription/{id}")).await;
        if r.json()["status"] == status {
            return r.json();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let st = app.get(&format!("Subscription/{id}/$status")).await;
    panic!("Subscription/{id} never became {status}: {}", st.text);
}

crate::on_both_backends_with!(
    spawn_fast,
    admissions_reach_the_subscriber_in_order_with_their_context,
    an_endpoint_that_was_down_gets_every_event_in_order,
    a_patient_app_subscribes_within_its_patient
);

async fn admissions_reach_the_subscriber_in_order_with_their_context(app: TestApp) {
    let hook = Receiver::start().await;
    let (a, _) = app
        .create(&json!({"resourceType":"Patient","name":[{"family":"Admitted"}]}))
        .await;
    let (b, _) = app.create(&json!({"resourceType":"Patient"})).await;
    let (sid, created) = app
        .create(&subscription(
            "encounter-start",
            &[&format!("Encounter?patient=Patient/{a}")],
            &hook.url,
            "full-resource",
        ))
        .await;
    assert_eq!(created["status"], "requested");
    assert!(
        created["channel"].get("header").is_none(),
        "headers are write-only: {created}"
    );

    // the handshake, with the subscriber's header; then the subscription is active
    let got = hook
        .wait_until(10, "the handshake", |g| !g.is_empty())
        .await;
    assert_eq!(kind(&got[0].body), "handshake");
    assert_eq!(
        got[0].authorization.as_deref(),
        Some("Bearer receiver-secret")
    );
    let active = wait_status(&app, &sid, "active").await;
    assert!(active["channel"].get("header").is_none());

    let (e1, _) = app.create(&encounter(&a, "in-progress")).await; // fires
    app.create(&encounter(&b, "in-progress")).await; // another patient: filtered out
    let (e2, planned) = app.create(&encounter(&a, "planned")).await; // not started
    let mut started = planned.clone();
    started["status"] = json!("in-progress");
    let r = app.put(&format!("Encounter/{e2}"), &started).await; // fires
    assert_eq!(r.status, 200);
    let mut again = r.json();
    again["period"] = json!({"start": "2026-11-26T10:00:00Z"});
    app.put(&format!("Encounter/{e2}"), &again).await; // still in progress: no event

    let got = hook
        .wait_until(10, "two admissions", |g| {
            g.iter()
                .filter(|r| kind(&r.body) == "event-notification")
                .count()
                >= 2
        })
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let events: Vec<Value> = hook
        .received()
        .into_iter()
        .filter(|r| kind(&r.body) == "event-notification")
        .map(|r| r.body)
        .collect();
    assert_eq!(events.len(), 2, "exactly the two admissions: {got:#?}");
    assert_eq!(event_numbers(&events[0]), [1]);
    assert_eq!(event_numbers(&events[1]), [2]);
    assert_eq!(
        focuses(&events[0]),
        [format!("{}/Encounter/{e1}", app.base)]
    );
    assert_eq!(
        focuses(&events[1]),
        [format!("{}/Encounter/{e2}", app.base)]
    );
    let n = &events[1];
    assert_eq!(n["type"], "history");
    assert_eq!(n["entry"][0]["resource"]["resourceType"], "Parameters");
    assert_eq!(
        status_param(n, "topic")["valueCanonical"],
        format!("{TOPIC}encounter-start")
    );
    assert_eq!(
        status_param(n, "events-since-subscription-start")["valueString"],
        "2"
    );
    // full-resource: the focus as it was at the event, and the topic's context (the patient)
    assert_eq!(n["entry"][1]["resource"]["id"], e2.as_str());
    assert_eq!(n["entry"][1]["resource"]["status"], "in-progress");
    assert_eq!(n["entry"][1]["request"]["method"], "PUT");
    let context: Vec<&Value> = n["entry"].as_array().unwrap()[2..].iter().collect();
    assert!(
        context.iter().any(
            |e| e["resource"]["resourceType"] == "Patient" && e["resource"]["id"] == a.as_str()
        ),
        "{n}"
    );

    // $status says the same; $events gives the events again
    let st = app.get(&format!("Subscription/{sid}/$status")).await;
    assert_eq!(st.status, 200, "{}", st.text);
    let params = &st.json()["entry"][0]["resource"];
    assert_eq!(params["resourceType"], "Parameters");
    let ev = app
        .get(&format!(
            "Subscription/{sid}/$events?eventsSinceNumber=1&content=id-only"
        ))
        .await;
    assert_eq!(ev.status, 200, "{}", ev.text);
    assert_eq!(event_numbers(&ev.json()), [1, 2]);
    assert_eq!(kind(&ev.json()), "query-event");
    assert!(ev.json()["entry"][1].get("resource").is_none(), "id-only");
    // numbers at the edges of an i64 are a range like any other, or a clear 400
    let edge = app
        .get(&format!(
            "Subscription/{sid}/$events?eventsUntilNumber={}",
            i64::MIN
        ))
        .await;
    assert_eq!(edge.status, 200, "{}", edge.text);
    assert!(event_numbers(&edge.json()).is_empty());
    let wide = app
        .get(&format!(
            "Subscription/{sid}/$events?eventsSinceNumber={}&eventsUntilNumber={}",
            i64::MIN,
            i64::MAX
        ))
        .await;
    assert_eq!(wide.status, 200, "{}", wide.text);
    assert_eq!(event_numbers(&wide.json()), [1, 2]);
    let junk = app
        .get(&format!("Subscription/{sid}/$events?eventsSinceNumber=abc"))
        .await;
    assert_eq!(junk.status, 400);
}

async fn an_endpoint_that_was_down_gets_every_event_in_order(app: TestApp) {
    let hook = Receiver::start().await;
    let (p, _) = app.create(&json!({"resourceType":"Patient"})).await;
    let (sid, _) = app
        .create(&subscription(
            "lab-result",
            &[&format!("Observation?patient=Patient/{p}")],
            &hook.url,
            "id-only",
        ))
        .await;
    hook.wait_until(10, "the handshake", |g| !g.is_empty())
        .await;
    wait_status(&app, &sid, "active").await;

    hook.set_down(true);
    let lab = |value: f64| {
        json!({"resourceType":"Observation","status":"final",
            "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
            "code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},
            "subject":{"reference":format!("Patient/{p}")},
            "valueQuantity":{"value":value,"unit":"mmol/L"}})
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.create(&lab(5.0 + i as f64)).await.0);
    }
    // failures past the budget show as `error`; nothing is dropped
    wait_status(&app, &sid, "error").await;
    let st = app.get(&format!("Subscription/{sid}/$status")).await;
    let params = st.json()["entry"][0]["resource"].clone().into_bundle();
    assert_eq!(status_param(&params, "status")["valueCode"], "error");
    assert!(
        status_param(&params, "error")["valueCodeableConcept"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("503")),
        "$status says why: {params}"
    );
    hook.set_down(false);
    let got = hook
        .wait_until(15, "all five events", |g| {
            g.iter()
                .flat_map(|r| event_numbers(&r.body))
                .collect::<Vec<_>>()
                .len()
                >= 5
        })
        .await;
    let numbers: Vec<i64> = got.iter().flat_map(|r| event_numbers(&r.body)).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5], "in order, no gaps, no repeats");
    let delivered: Vec<String> = got.iter().flat_map(|r| focuses(&r.body)).collect();
    let expected: Vec<String> = ids
        .iter()
        .map(|id| format!("{}/Observation/{id}", app.base))
        .collect();
    assert_eq!(delivered, expected);
    wait_status(&app, &sid, "active").await;
    assert!(*hook.refused.lock().unwrap() >= 2, "it was retried");
}

trait IntoBundle {
    fn into_bundle(self) -> Value;
}

impl IntoBundle for Value {
    /// A bare Parameters as the first entry of a Bundle, for `status_param`.
    fn into_bundle(self) -> Value {
        json!({"entry": [{"resource": self}]})
    }
}

/// An R4 classic criteria Subscription, as HAPI users bring them: a create or update that
/// matches the search is notified, with the resource since a payload type is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_criteria_subscription_is_notified_of_matches() {
    let app = spawn_fast(Backend::Sqlite).await;
    let hook = Receiver::start().await;
    let mut classic = subscription("unused", &[], &hook.url, "unused");
    classic["criteria"] = json!("Observation?code=http://loinc.org|1975-2");
    classic["channel"]
        .as_object_mut()
        .unwrap()
        .remove("_payload");
    let (sid, _) = app.create(&classic).await;
    hook.wait_until(10, "the handshake", |g| !g.is_empty())
        .await;
    wait_status(&app, &sid, "active").await;
    let obs = |code: &str| {
        json!({"resourceType":"Observation","status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":code}]}})
    };
    app.create(&obs("2345-7")).await;
    let (bilirubin, _) = app.create(&obs("1975-2")).await;
    let got = hook
        .wait_until(10, "the bilirubin result", |g| {
            g.iter().any(|r| kind(&r.body) == "event-notification")
        })
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let events: Vec<Value> = hook
        .received()
        .into_iter()
        .filter(|r| kind(&r.body) == "event-notification")
        .map(|r| r.body)
        .collect();
    assert_eq!(events.len(), 1, "{got:#?}");
    assert_eq!(events[0]["entry"][1]["resource"]["id"], bilirubin.as_str());
}

/// A token confined to one patient may create a Subscription (the Backport IG allows it): the
/// server marks it as that patient's, only that patient's changes reach it, and no other
/// patient's app may read, change or end it.
async fn a_patient_app_subscribes_within_its_patient(app: TestApp) {
    use reqwest::Method;
    let hook = Receiver::start().await;
    let (a, _) = app.create(&json!({"resourceType": "Patient"})).await;
    let (b, _) = app.create(&json!({"resourceType": "Patient"})).await;
    let (mine, theirs) = (
        app.token_for("patient/*.cruds", Some(&a)),
        app.token_for("patient/*.cruds", Some(&b)),
    );
    // no filter at all: the token's patient bounds it
    let body = subscription("encounter-start", &[], &hook.url, "id-only");
    let created = app
        .send_as(&mine, Method::POST, "Subscription", Some(&body))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let sid = created.json()["id"].as_str().unwrap().to_string();
    let mark = json!([{"url": "http://emrsync.org/fhir/StructureDefinition/subscription-patient",
                       "valueReference": {"reference": format!("Patient/{a}")}}]);
    assert_eq!(created.json()["extension"], mark);
    wait_status(&app, &sid, "active").await;

    app.create(&encounter(&b, "in-progress")).await; // another patient's: never sent
    let (e, _) = app.create(&encounter(&a, "in-progress")).await;
    hook.wait_until(10, "the admission", |g| {
        g.iter().any(|r| kind(&r.body) == "event-notification")
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let events: Vec<Value> = hook
        .received()
        .into_iter()
        .filter(|r| kind(&r.body) == "event-notification")
        .map(|r| r.body)
        .collect();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(focuses(&events[0]), [format!("{}/Encounter/{e}", app.base)]);

    // its own app reads it; another patient's neither reads, changes nor ends it
    let path = format!("Subscription/{sid}");
    assert_eq!(
        app.send_as(&mine, Method::GET, &path, None).await.status,
        200
    );
    assert_eq!(
        app.send_as(&theirs, Method::GET, &path, None).await.status,
        404
    );
    let mut stolen = created.json();
    stolen["extension"] = json!([{"url": "http://emrsync.org/fhir/StructureDefinition/subscription-patient",
                                  "valueReference": {"reference": format!("Patient/{b}")}}]);
    let r = app
        .send_as(&theirs, Method::PUT, &path, Some(&stolen))
        .await;
    assert!(matches!(r.status, 403 | 404), "{}", r.text);
    assert!(matches!(
        app.send_as(&theirs, Method::DELETE, &path, None)
            .await
            .status,
        403 | 404
    ));
    // a mark the client writes itself is the server's to set: it stays its patient's
    let r = app.send_as(&mine, Method::PUT, &path, Some(&stolen)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["extension"], mark);
    // each app searches its own patient's Subscriptions only; a system token finds them by
    // the server-defined `patient` parameter
    let other = app
        .send_as(&theirs, Method::POST, "Subscription", Some(&body))
        .await;
    assert_eq!(other.status, 201, "{}", other.text);
    let other_id = other.json()["id"].as_str().unwrap().to_string();
    let found = |token: String, query: String| {
        let app = &app;
        async move {
            let r = app.send_as(&token, Method::GET, &query, None).await;
            assert_eq!(r.status, 200, "{query}: {}", r.text);
            crate::helpers::matched_ids(&r.json())
        }
    };
    assert_eq!(
        found(mine.clone(), "Subscription".into()).await,
        [sid.as_str()]
    );
    assert_eq!(
        found(
            theirs.clone(),
            "Subscription?status=requested,active,error,off".into()
        )
        .await,
        [other_id.as_str()]
    );
    let admin = app.token_for("system/Subscription.rs", None);
    assert_eq!(
        found(admin, format!("Subscription?patient=Patient/{a}")).await,
        [sid.as_str()]
    );
    assert_eq!(
        app.send_as(&mine, Method::DELETE, &path, None).await.status,
        200
    );
}
