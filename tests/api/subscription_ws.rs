//! The websocket channel: a binding token from `$get-ws-binding-token`, a real websocket
//! client binding with it, the handshake and then each event on the socket; events that came
//! while no socket was open arrive when one binds again.

use crate::helpers::{Backend, TestApp, spawn};
use crate::receiver::{event_numbers, focuses, kind};
use crate::subscriptions::subscription;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A fresh binding token and the socket URL for Subscription `id`.
async fn binding(app: &TestApp, id: &str) -> (String, String) {
    let r = app
        .get(&format!("Subscription/{id}/$get-ws-binding-token"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let p = r.json();
    let get = |name: &str| -> String {
        let param = p["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {p}"));
        ["valueString", "valueUrl"]
            .iter()
            .find_map(|k| param[*k].as_str())
            .unwrap()
            .to_string()
    };
    (get("token"), get("websocket-url"))
}

async fn bind(app: &TestApp, id: &str) -> Socket {
    let (token, url) = binding(app, id).await;
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::Text(format!("bind-with-token {token}").into()))
        .await
        .unwrap();
    ws
}

/// The next JSON text frame (pings are answered by the client library).
async fn next(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket stays open")
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_subscriber_binds_and_receives_its_events() {
    let app = spawn(Backend::Sqlite).await;
    let mut s = subscription("patient-demographics", &[], "unused", "id-only");
    s["channel"] = json!({"type": "websocket", "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content", "valueCode": "id-only"}]}});
    let (sid, _) = app.create(&s).await;

    let mut ws = bind(&app, &sid).await;
    let first = next(&mut ws).await;
    assert_eq!(kind(&first), "handshake", "{first}");
    let (p1, _) = app.create(&json!({"resourceType":"Patient"})).await;
    let event = next(&mut ws).await;
    assert_eq!(kind(&event), "event-notification");
    assert_eq!(event_numbers(&event), [1]);
    assert_eq!(focuses(&event), [format!("{}/Patient/{p1}", app.base)]);

    // a token that is not a binding token is refused on the socket
    let (_, url) = binding(&app, &sid).await;
    let (mut bad, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    bad.send(Message::Text(
        format!("bind-with-token {}", app.token).into(),
    ))
    .await
    .unwrap();
    let refused = next(&mut bad).await;
    assert!(
        refused["error"].as_str().unwrap().contains("not valid"),
        "{refused}"
    );

    // no socket open: the event waits, and arrives after the next binding's handshake
    ws.close(None).await.unwrap();
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (p2, _) = app.create(&json!({"resourceType":"Patient"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = bind(&app, &sid).await;
    assert_eq!(kind(&next(&mut again).await), "handshake");
    let waited = next(&mut again).await;
    assert_eq!(event_numbers(&waited), [2]);
    assert_eq!(focuses(&waited), [format!("{}/Patient/{p2}", app.base)]);

    // a rest-hook subscription has no socket to bind
    let (rest, _) = app
        .create(&subscription(
            "patient-demographics",
            &[],
            "http://127.0.0.1:9/x",
            "id-only",
        ))
        .await;
    let r = app
        .get(&format!("Subscription/{rest}/$get-ws-binding-token"))
        .await;
    assert_eq!(r.status, 400);
}
