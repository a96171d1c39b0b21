//! A person's decisions on identity as the integration team meets them over the admin API: a
//! decision on a review withdrawn (the pair back in the queue, the records as the matcher sees
//! them), two persons merged and unmerged with their golden records following, every step in
//! the records' link history, and what cannot be done refused with a reason.

use crate::helpers::{Backend, TestApp, sorted, spawn_with};
use serde_json::{Value, json};

async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

fn patient(given: &str, family: &str, birth: &str, mrn: &str) -> Value {
    json!({"resourceType": "Patient",
           "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": mrn}],
           "name": [{"family": family, "given": [given]}],
           "gender": "female", "birthDate": birth,
           "address": [{"line": ["8 Stanley Street"], "city": "Springfield", "postalCode": "62701"}]})
}

/// POST `body` to the admin API's `path`: (status, answer).
async fn admin_post(app: &TestApp, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = app.client.post(format!("{}{path}", app.root));
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn of(app: &TestApp, patient: &str) -> Value {
    app.get_url(&format!("{}/admin/mpi/patients/{patient}", app.root))
        .await
        .json()
}

async fn person(app: &TestApp, patient: &str) -> String {
    of(app, patient).await["person"]
        .as_str()
        .unwrap()
        .to_string()
}

fn last_action(of: &Value) -> String {
    of["history"].as_array().unwrap().last().unwrap()["action"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The Patient ids a golden record links to as its records, sorted.
fn records(golden: &Value) -> Vec<String> {
    let mut ids: Vec<String> = golden["link"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["type"] == "seealso")
        .map(|l| l["other"]["reference"].as_str().unwrap()[8..].to_string())
        .collect();
    ids.sort();
    ids
}

async fn a_decision_on_a_review_can_be_undone(app: TestApp) {
    // twins: one family, birth date and address, two given names: a person decides
    let (a, _) = app
        .create(&patient("Michaela", "Neumann", "1965-11-11", "T-1"))
        .await;
    let (b, _) = app
        .create(&patient("Sophie", "Neumann", "1965-11-11", "T-2"))
        .await;
    app.mpi_settled().await;
    let open = app
        .get_url(&format!("{}/admin/mpi/reviews?status=open", app.root))
        .await
        .json();
    let review = open["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            let ids = [r["patient"]["id"].as_str(), r["other"]["id"].as_str()];
            ids.contains(&Some(a.as_str())) && ids.contains(&Some(b.as_str()))
        })
        .unwrap_or_else(|| panic!("{open}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    // nothing decided yet: nothing to undo
    let (status, said) = admin_post(&app, &format!("/admin/mpi/reviews/{review}/undo"), None).await;
    assert_eq!(status, 409, "{said}");
    assert!(said["error"].as_str().unwrap().contains("open"), "{said}");

    // decided the same person, by mistake: one person, with a golden record
    let (status, _) = admin_post(
        &app,
        &format!("/admin/mpi/reviews/{review}"),
        Some(json!({"decision": "same"})),
    )
    .await;
    assert_eq!(status, 200);
    app.mpi_settled().await;
    let joined = person(&app, &a).await;
    assert_eq!(person(&app, &b).await, joined);
    let golden = app.get(&format!("/Patient/{joined}")).await.json();
    assert_eq!(
        records(&golden),
        sorted(vec![a.clone(), b.clone()]),
        "{golden}"
    );

    // undone: the pair is open again, the twins two persons again, and the history says why
    let (status, undone) =
        admin_post(&app, &format!("/admin/mpi/reviews/{review}/undo"), None).await;
    assert_eq!(status, 200, "{undone}");
    assert_eq!(undone["status"], "open", "{undone}");
    assert_eq!(undone["decidedBy"], Value::Null, "{undone}");
    app.mpi_settled().await;
    assert_ne!(person(&app, &a).await, person(&app, &b).await);
    for id in [&a, &b] {
        let of = of(&app, id).await;
        assert_eq!(of["decidedBy"], Value::Null, "{of}");
        let actions: Vec<&str> = of["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["action"].as_str().unwrap())
            .collect();
        assert!(actions.contains(&"undone"), "{of}");
    }
    // the golden record of the person the mistake made now has at most one record
    let golden = app.get(&format!("/Patient/{joined}")).await.json();
    assert!(records(&golden).len() <= 1, "{golden}");
    let open = app
        .get_url(&format!("{}/admin/mpi/reviews?status=open", app.root))
        .await
        .json();
    assert!(
        open["reviews"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == review.as_str()),
        "{open}"
    );
    // undone once is undone: again is refused, as is a review that does not exist
    let (status, _) = admin_post(&app, &format!("/admin/mpi/reviews/{review}/undo"), None).await;
    assert_eq!(status, 409);
    let (status, _) = admin_post(&app, "/admin/mpi/reviews/nope/undo", None).await;
    assert_eq!(status, 404);
}

async fn persons_are_merged_and_unmerged(app: TestApp) {
    // two persons of two records each (each pair shares an MRN), and a person of one record
    let (a1, _) = app
        .create(&patient("Agnes", "Okafor", "1950-02-03", "M-A"))
        .await;
    let (a2, _) = app
        .create(&patient("Agnes", "Okafor", "1950-02-03", "M-A"))
        .await;
    let (b1, _) = app
        .create(&patient("Beatrice", "Lindqvist", "1972-07-19", "M-B"))
        .await;
    let (b2, _) = app
        .create(&patient("Beatrice", "Lindqvist", "1972-07-19", "M-B"))
        .await;
    let (c, _) = app
        .create(&patient("Carmen", "Ruiz", "1988-01-30", "M-C"))
        .await;
    app.mpi_settled().await;
    let (pa, pb, pc) = (
        person(&app, &a1).await,
        person(&app, &b1).await,
        person(&app, &c).await,
    );
    assert_eq!(person(&app, &a2).await, pa);
    assert_eq!(person(&app, &b2).await, pb);
    assert!(pa != pb && pb != pc && pa != pc);

    // a person of two records merged into another, each named by its golden record's id
    let (status, merge) = admin_post(
        &app,
        "/admin/mpi/merges",
        Some(json!({"from": pb, "into": pa, "reason": "one patient, per the registration desk"})),
    )
    .await;
    assert_eq!(status, 200, "{merge}");
    assert_eq!(merge["from"], pb.as_str());
    assert_eq!(merge["into"], pa.as_str());
    assert_eq!(merge["by"], "client tests");
    assert_eq!(
        merge["patients"],
        json!(sorted(vec![b1.clone(), b2.clone()]))
    );
    let merge_id = merge["id"].as_str().unwrap().to_string();
    app.mpi_settled().await;
    let of_b1 = of(&app, &b1).await;
    assert_eq!(of_b1["person"], pa.as_str(), "{of_b1}");
    assert_eq!(of_b1["decidedBy"], "client tests", "{of_b1}");
    assert_eq!(last_action(&of_b1), "merged", "{of_b1}");
    let survivor = app.get(&format!("/Patient/{pa}")).await.json();
    assert_eq!(
        records(&survivor),
        sorted(vec![a1.clone(), a2.clone(), b1.clone(), b2.clone()]),
        "{survivor}"
    );
    // the merged person's golden record stays for clients that kept its id, pointing on
    let gone = app.get(&format!("/Patient/{pb}")).await.json();
    assert_eq!(gone["active"], false, "{gone}");
    assert_eq!(
        gone["link"],
        json!([{"other": {"reference": format!("Patient/{pa}")}, "type": "replaced-by"}]),
        "{gone}"
    );
    // left with no records, it is still the MPI's: no source writes over it
    let mut taken = gone.clone();
    taken.as_object_mut().unwrap().remove("meta");
    taken["active"] = json!(true);
    taken["name"] = json!([{"family": "Lindqvist"}]);
    let r = app.put(&format!("/Patient/{pb}"), &taken).await;
    assert_eq!(r.status, 422, "{}", r.text);
    // the matcher leaves a merge be: a new version of a moved record keeps it where it is
    let mut again = app.get(&format!("/Patient/{b1}")).await.json();
    again["telecom"] = json!([{"system": "phone", "value": "217-555-0199"}]);
    assert_eq!(app.put(&format!("/Patient/{b1}"), &again).await.status, 200);
    app.mpi_settled().await;
    assert_eq!(person(&app, &b1).await, pa);

    // a person of one record, named by its Patient id, merged in too
    let (status, single) = admin_post(
        &app,
        "/admin/mpi/merges",
        Some(json!({"from": c, "into": a1})),
    )
    .await;
    assert_eq!(status, 200, "{single}");
    assert_eq!(single["patients"], json!([c]));
    app.mpi_settled().await;
    assert_eq!(person(&app, &c).await, pa);

    // what cannot be merged is refused, and says why
    let (status, said) = admin_post(
        &app,
        "/admin/mpi/merges",
        Some(json!({"from": a2, "into": pa})),
    )
    .await;
    assert_eq!(status, 409, "{said}");
    let (status, said) = admin_post(
        &app,
        "/admin/mpi/merges",
        Some(json!({"from": "no-such-one", "into": pa})),
    )
    .await;
    assert_eq!(status, 404, "{said}");
    assert!(said["error"].as_str().unwrap().contains("no-such-one"));
    let (status, said) = admin_post(
        &app,
        "/admin/mpi/merges",
        Some(json!({"from": a2, "onto": pa})),
    )
    .await;
    assert_eq!(status, 400, "{said}");
    let listed = app
        .get_url(&format!("{}/admin/mpi/merges", app.root))
        .await
        .json();
    let ids: Vec<&str> = listed["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{listed}");
    assert!(ids.contains(&merge_id.as_str()), "{listed}");

    // unmerged: the two records go back to their person, whose golden record is back
    let (status, undone) =
        admin_post(&app, &format!("/admin/mpi/merges/{merge_id}/undo"), None).await;
    assert_eq!(status, 200, "{undone}");
    assert_eq!(
        undone["restored"],
        json!(sorted(vec![b1.clone(), b2.clone()]))
    );
    assert_eq!(undone["left"], json!([]));
    assert_eq!(undone["undoneBy"], "client tests");
    app.mpi_settled().await;
    let of_b2 = of(&app, &b2).await;
    assert_eq!(of_b2["person"], pb.as_str(), "{of_b2}");
    assert_eq!(last_action(&of_b2), "unmerged", "{of_b2}");
    assert_eq!(person(&app, &b1).await, pb);
    let back = app.get(&format!("/Patient/{pb}")).await.json();
    assert_eq!(back["active"], true, "{back}");
    assert_eq!(records(&back), sorted(vec![b1.clone(), b2.clone()]));
    let survivor = app.get(&format!("/Patient/{pa}")).await.json();
    assert_eq!(
        records(&survivor),
        sorted(vec![a1.clone(), a2.clone(), c.clone()]),
        "{survivor}"
    );
    let (status, _) = admin_post(&app, &format!("/admin/mpi/merges/{merge_id}/undo"), None).await;
    assert_eq!(status, 409);

    // decisions hold patient data: a patient-scoped token may not make them
    let token = app.token_for("patient/*.rs", Some(&a1));
    let r = app
        .anonymous
        .post(format!("{}/admin/mpi/merges", app.root))
        .bearer_auth(token)
        .json(&json!({"from": c, "into": b1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

crate::on_both_backends_with!(
    spawn,
    a_decision_on_a_review_can_be_undone,
    persons_are_merged_and_unmerged,
);
