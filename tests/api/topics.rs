//! The topic catalogue as R4 clients read it: `Basic` resources with the R5 cross-version
//! extensions, owned by the server.

use crate::helpers::{Backend, TestApp, spawn};
use emrsync::config::{Settings, StoreArgs};
use emrsync::startup::Application;
use serde_json::{Value, json};

const XVER: &str = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.";

fn ext<'a>(resource: &'a Value, url: &str) -> Vec<&'a Value> {
    resource["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["url"] == url)
        .collect()
}

async fn topics(app: &TestApp) -> Vec<Value> {
    let r = app
        .get("Basic?code=http://hl7.org/fhir/fhir-types|SubscriptionTopic")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_topic_is_readable_as_a_basic() {
    let app = spawn(Backend::Sqlite).await;
    let metadata = app.get("metadata").await.json();
    let subscription = metadata["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Subscription")
        .unwrap();
    let advertised: Vec<String> = subscription["extension"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["url"]
                .as_str()
                .unwrap()
                .ends_with("subscriptiontopic-canonical")
        })
        .map(|e| e["valueCanonical"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(advertised.len(), catalogue_size());
    let found = topics(&app).await;
    let mut urls: Vec<String> = found
        .iter()
        .map(|b| {
            ext(b, &format!("{XVER}url"))[0]["valueUri"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    urls.sort();
    let mut want = advertised.clone();
    want.sort();
    assert_eq!(urls, want);

    // the encounter-start topic read by id says what fires it and what a subscriber may filter by
    let basic = app.get("Basic/topic-encounter-start").await.json();
    let trigger = ext(&basic, &format!("{XVER}resourceTrigger"))[0];
    let inner = trigger["extension"].as_array().unwrap();
    assert!(inner.iter().any(|e| e["url"] == "resource"
        && e["valueUri"] == "http://hl7.org/fhir/StructureDefinition/Encounter"));
    let query = inner.iter().find(|e| e["url"] == "queryCriteria").unwrap();
    assert!(
        query["extension"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["url"] == "current" && e["valueString"] == "status=in-progress")
    );
    let filters: Vec<&str> = ext(&basic, &format!("{XVER}canFilterBy"))
        .iter()
        .flat_map(|f| f["extension"].as_array().unwrap())
        .filter(|e| e["url"] == "filterParameter")
        .map(|e| e["valueString"].as_str().unwrap())
        .collect();
    assert!(filters.contains(&"patient"), "{filters:?}");
    assert_eq!(basic["modifierExtension"][0]["valueCode"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_change_or_add_topics_and_a_restart_writes_nothing_new() {
    let app = spawn(Backend::Sqlite).await;
    let mut basic = app.get("Basic/topic-lab-result").await.json();
    assert_eq!(basic["meta"]["versionId"], "1");
    basic["extension"].as_array_mut().unwrap().truncate(1);
    let r = app.put("Basic/topic-lab-result", &basic).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("server's SubscriptionTopics"), "{}", r.text);
    assert_eq!(app.delete("Basic/topic-lab-result").await.status, 403);

    let mut own = basic.clone();
    own.as_object_mut().unwrap().remove("id");
    let r = app.post("Basic", &own).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.text.contains("client-defined SubscriptionTopics"),
        "{}",
        r.text
    );
    // other Basic resources are the clients' own business
    let r = app
        .post(
            "Basic",
            &json!({"resourceType": "Basic", "code": {"text": "note"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // a second process on the same database finds the topics already published
    let mut settings = Settings::new(
        "127.0.0.1:0",
        StoreArgs::new(app.dir.path().to_path_buf(), None),
    );
    settings.workers = Some(1);
    let _second = Application::build(settings)
        .await
        .expect("second process starts");
    assert_eq!(topics(&app).await.len(), catalogue_size());
    let after = app.get("Basic/topic-lab-result").await.json();
    assert_eq!(after["meta"]["versionId"], "1", "{after}");
}

/// The topics the catalogue holds: one file each in `capability/topics/`.
fn catalogue_size() -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/capability/topics"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count()
}
