//! History at instance, type and system level, with `_since`, `_count` and paging links.

use crate::helpers::TestApp;
use crate::on_both_backends;
use serde_json::{Value, json};
use std::collections::HashSet;

on_both_backends!(
    instance_history_lists_every_version_newest_first,
    type_and_system_history_with_since,
    paging_is_exact_while_others_write,
);

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"].as_array().cloned().unwrap_or_default()
}

/// A Bundle's `next` link, when it has one.
pub fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().to_string())
}

async fn instance_history_lists_every_version_newest_first(app: TestApp) {
    let (id, mut body) = app
        .create(&json!({"resourceType":"Patient","active":true}))
        .await;
    body["active"] = json!(false);
    assert_eq!(app.put(&format!("Patient/{id}"), &body).await.status, 200);
    assert_eq!(app.delete(&format!("Patient/{id}")).await.status, 200);

    let h = app.get(&format!("Patient/{id}/_history")).await;
    assert_eq!(h.status, 200, "{}", h.text);
    let b = h.json();
    assert_eq!(
        (b["type"].as_str(), b["total"].as_i64()),
        (Some("history"), Some(3))
    );
    let e = entries(&b);
    let methods: Vec<&str> = e
        .iter()
        .map(|e| e["request"]["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["DELETE", "PUT", "POST"]);
    assert!(
        e[0].get("resource").is_none(),
        "a deletion carries no resource"
    );
    assert_eq!(e[1]["resource"]["active"], false);
    assert_eq!(e[2]["resource"]["meta"]["versionId"], "1");
    assert_eq!(e[2]["response"]["etag"], "W/\"1\"");
    assert_eq!(e[0]["fullUrl"], app.url(&format!("Patient/{id}")));

    assert_eq!(app.get("Patient/never-was/_history").await.status, 404);
    assert_eq!(
        app.get(&format!("Patient/{id}/_history?_since=yesterday"))
            .await
            .status,
        400
    );
    assert_eq!(
        app.get(&format!("Patient/{id}/_history?_sort=x"))
            .await
            .status,
        400
    );
}

async fn type_and_system_history_with_since(app: TestApp) {
    // the server's own resources (its SubscriptionTopics) are in the system history from the start
    let before = app.get("_history").await.json()["total"].as_i64().unwrap();
    app.create(&json!({"resourceType":"Patient","active":true}))
        .await;
    app.create(&json!({"resourceType":"Organization","name":"Early"}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let cut = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (late, _) = app
        .create(&json!({"resourceType":"Patient","active":false}))
        .await;

    let patients = app.get("Patient/_history").await.json();
    assert_eq!(patients["total"], 2);
    assert!(
        entries(&patients)
            .iter()
            .all(|e| e["resource"]["resourceType"] == "Patient")
    );
    let all = app.get("_history").await.json();
    assert_eq!(all["total"], before + 3);
    let since = app
        .get(&format!("_history?_since={}", urlencode(&cut)))
        .await
        .json();
    assert_eq!(since["total"], 1, "{since}");
    assert_eq!(entries(&since)[0]["resource"]["id"], late.as_str());
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// Walk type history two entries a page while another client keeps creating resources:
/// every resource that existed before the walk is seen exactly once.
async fn paging_is_exact_while_others_write(app: TestApp) {
    let mut before = HashSet::new();
    for i in 0..9 {
        let (id, _) = app
            .create(&json!({"resourceType":"Patient","name":[{"family":format!("P{i}")}]}))
            .await;
        before.insert(id);
    }
    let first = app.get("Patient/_history?_count=2").await.json();
    assert_eq!(entries(&first).len(), 2);
    let mut seen: Vec<String> = entries(&first)
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().into())
        .collect();
    let mut next = next_link(&first);
    let mut pages = 1;
    while let Some(url) = next {
        app.create(&json!({"resourceType":"Patient","name":[{"family":"Concurrent"}]}))
            .await;
        let page = app.get_url(&url).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let b = page.json();
        seen.extend(
            entries(&b)
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string()),
        );
        next = next_link(&b);
        pages += 1;
        assert!(pages < 20, "paging terminates");
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no entry repeated: {seen:?}");
    assert_eq!(
        unique, before,
        "exactly the resources that existed when the walk began"
    );
    assert_eq!(pages, 5);
}
