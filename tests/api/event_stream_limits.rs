//! The event stream's limits: a change too big for the broker (its `max_payload`) is said,
//! counted and skipped, never holding back the changes after it; the stream emrsync creates
//! keeps events as long as it was told, and a stream that exists already with subjects that do
//! not cover emrsync's is refused with the reason, every change kept in the outbox.

use crate::event_stream::{Access, Nats};
use crate::event_stream_crash::all_published;
use crate::helpers::mint;
use crate::process::{free_port, metric, start, wait_healthy};
use emrsync::config::StoreArgs;
use serde_json::{Value, json};
use std::time::Duration;

/// A `system/*.cruds` token of the server at `root` on `store`.
fn token(store: &StoreArgs, root: &str) -> String {
    mint(
        &store.database().unwrap(),
        &format!("{root}/fhir"),
        "system/*.cruds",
        None,
    )
}

async fn create(http: &reqwest::Client, root: &str, token: &str, body: &Value) -> String {
    let r = http
        .post(format!("{root}/fhir/Patient"))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_too_big_for_the_broker_is_skipped_and_the_rest_go_on() {
    // a broker that takes messages of at most 4 KiB; events carry the resource itself
    let nats = Nats::start_with(free_port(), "max_payload: 4096", Access::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = StoreArgs::new(dir.path().to_path_buf(), None);
    let http = reqwest::Client::new();
    let server = start(
        free_port(),
        &store,
        &[
            "--stream",
            &nats.url,
            "--stream-payload",
            "resource",
            "--stream-max-age-hours",
            "2",
        ],
    );
    wait_healthy(&http, &server.root).await;
    let token = token(&store, &server.root);

    let small = |family: &str| json!({"resourceType": "Patient", "name": [{"family": family}]});
    let before = create(&http, &server.root, &token, &small("Before")).await;
    // a photo of 8,000 base64 characters: the event is twice the broker's limit
    let big = json!({"resourceType": "Patient", "name": [{"family": "Big"}],
        "photo": [{"contentType": "image/png", "data": "A".repeat(8000)}]});
    let big = create(&http, &server.root, &token, &big).await;
    let after = create(&http, &server.root, &token, &small("After")).await;

    // every change is marked, the big one as skipped; none waits behind it (start-up's
    // own big resources, the capability's, are skipped the same way)
    let seqs = all_published(&store).await;
    let events = nats.events("EMRSYNC", 2).await;
    let ours = [before.as_str(), big.as_str(), after.as_str()];
    let patients: Vec<&str> = events
        .iter()
        .filter_map(|(_, _, e)| e["resourceId"].as_str())
        .filter(|id| ours.contains(id))
        .collect();
    assert_eq!(patients, [before.as_str(), after.as_str()], "{events:?}");
    let skipped = metric(&http, &server.root, "emrsync_stream_skipped_total").await;
    assert!(skipped >= 1.0);
    assert_eq!(
        events.len() + skipped as usize,
        seqs.len(),
        "each change published or skipped"
    );
    assert!(events.iter().all(|(_, _, e)| e.to_string().len() <= 4096));

    // the stream emrsync created keeps events for the hours it was given
    let info = nats.stream_info("EMRSYNC").await;
    assert_eq!(info.config.max_age, Duration::from_secs(2 * 3600));
    assert_eq!(info.config.subjects, ["emrsync.>"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_does_not_take_emrsyncs_subjects_is_refused_and_nothing_is_lost() {
    let nats = Nats::start().await;
    // someone made the stream EMRSYNC for other subjects before emrsync started
    let js = async_nats::jetstream::new(nats.client().await);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "EMRSYNC".into(),
        subjects: vec!["elsewhere.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = StoreArgs::new(dir.path().to_path_buf(), None);
    let http = reqwest::Client::new();
    let log = dir.path().join("server.log");
    let server = crate::process::start_logged(free_port(), &store, &["--stream", &nats.url], &log);
    wait_healthy(&http, &server.root).await;
    let token = token(&store, &server.root);
    create(
        &http,
        &server.root,
        &token,
        &json!({"resourceType": "Patient", "name": [{"family": "Kept"}]}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("elsewhere.>") && said.contains("emrsync.>"),
        "the log names both subjects: {said}"
    );
    let mut stream = js.get_stream("EMRSYNC").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
    assert!(
        metric(
            &http,
            &server.root,
            "emrsync_outbox_depth{stage=\"stream\"}"
        )
        .await
            >= 1.0,
        "the change waits in the outbox"
    );
}
