//! `restate::prepare`: what a sender's writes come to before the writer's turn.

use super::*;
use crate::ingest::{Channel, Hooks, Source};
use crate::store::{Method, Version};
use serde_json::json;
use std::sync::Arc;

fn ctx() -> Writer {
    let grant = Arc::new(crate::auth::Grant::unrestricted());
    Writer {
        ctx: crate::subscriptions::write_rules::server_context(),
        grant,
        source: Arc::new(Source {
            channel: Channel::Hl7v2,
            system: "test".into(),
            reviewed_by: None,
        }),
        hooks: Arc::new(Hooks::default()),
    }
}

fn practitioner(family: &str) -> Stated {
    Stated {
        rtype: "Practitioner",
        id: "pr-1".into(),
        body: json!({"resourceType": "Practitioner", "id": "pr-1", "name": [{"family": family}]}),
    }
}

/// Two versions of one resource prepared over the same head would refuse each other at
/// commit, on every try: a sender naming a resource twice would never get through.
#[test]
fn a_resource_given_twice_is_written_once_as_last_given() {
    let location = Stated {
        rtype: "Location",
        id: "loc-1".into(),
        body: json!({"resourceType": "Location", "id": "loc-1", "name": "4W"}),
    };
    let stated = [practitioner("Welby"), location, practitioner("Kildare")];
    let ready = prepare(&stated, &Plain, &ctx(), |_, _| Ok(Current::default())).unwrap();
    let written: Vec<(String, String)> = ready
        .versions
        .iter()
        .map(|p| {
            let v = p.version();
            (
                format!("{}/{}", v.resource_type, v.id),
                v.json()["name"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        written,
        [
            ("Location/loc-1".to_string(), "\"4W\"".to_string()),
            (
                "Practitioner/pr-1".to_string(),
                json!([{"family": "Kildare"}]).to_string()
            ),
        ]
    );
    assert!(ready.unchanged.is_empty());
}

/// A resource the sender restates as it is gets no version, but its head is kept for the
/// check at commit.
#[test]
fn a_resource_restated_as_it_is_is_left_alone_with_its_head() {
    let stored = Version {
        resource_type: "Practitioner".into(),
        id: "pr-1".into(),
        version_id: 3,
        last_updated: 0,
        method: Method::Put,
        deleted: false,
        content: json!({"resourceType": "Practitioner", "id": "pr-1", "meta": {"versionId": "3"},
                        "name": [{"family": "Welby"}]})
        .to_string()
        .into(),
        seq: 0,
    };
    let stated = [practitioner("Welby")];
    let current = |_: &str, _: &str| Ok(Current::of(Some(stored.clone())));
    let ready = prepare(&stated, &Plain, &ctx(), current).unwrap();
    assert!(ready.versions.is_empty());
    let u = &ready.unchanged[0];
    assert_eq!(
        (u.rtype, u.id.as_str(), u.head),
        ("Practitioner", "pr-1", Some((3, false)))
    );
    // a changed name is a version 4 over that head
    let stated = [practitioner("Kildare")];
    let ready = prepare(&stated, &Plain, &ctx(), current).unwrap();
    assert_eq!(ready.versions[0].version().version_id, 4);
}
