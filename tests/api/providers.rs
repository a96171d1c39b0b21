//! The provider registry as an integration team meets it: the attending an HL7v2 ADT names,
//! the same doctor a REST client wrote, and the ordering physician of a lab's transaction
//! (without an NPI, at the same hospital under its legal name) are one Practitioner, with a
//! golden record; pairs the rules are unsure about wait for a person, whose decision stands
//! and can be undone.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::mllp_client::Mllp;
use serde_json::{Value, json};

const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
const TAG: &str = "http://emrsync.org/fhir/CodeSystem/mpi|golden-record";

async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |s| s.mllp = Some("127.0.0.1:0".into())).await
}

/// What the registry says of `rtype/id`.
async fn filed(app: &TestApp, rtype: &str, id: &str) -> Value {
    let r = app
        .get_url(&format!("{}/admin/providers/{rtype}/{id}", app.root))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// The records a golden record names, sorted.
fn sources(golden: &Value) -> Vec<String> {
    let mut refs: Vec<String> = golden["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["url"] == "http://emrsync.org/fhir/StructureDefinition/golden-source")
        .map(|x| {
            let record = x["extension"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["url"] == "record")
                .unwrap();
            record["valueReference"]["reference"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    refs.sort();
    refs
}

async fn one_doctor_from_three_sources_is_one_provider(app: TestApp) {
    // a REST client: the doctor with his NPI, and his role at the hospital
    let (rest, _) = app
        .create(&json!({"resourceType": "Practitioner",
                        "identifier": [{"system": NPI, "value": "1234"}],
                        "name": [{"family": "Welby", "given": ["Marcus"], "prefix": ["Dr"]}],
                        "telecom": [{"system": "phone", "value": "217-555-0100"}]}))
        .await;
    let (hospital, _) = app
        .create(
            &json!({"resourceType": "Organization", "name": "Good Health Hospital",
                        "address": [{"city": "Springfield", "postalCode": "62701"}]}),
        )
        .await;
    let role = json!({"resourceType": "PractitionerRole",
                      "practitioner": {"reference": format!("Practitioner/{rest}")},
                      "organization": {"reference": format!("Organization/{hospital}")}});
    let (rest_role, _) = app.create(&role).await;
    // an HL7v2 ADT: the attending, named by the same NPI
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let adt = crate::hl7v2::adt("A01", "PROV-1", "PROV-MRN-1", "PROV-V-1", "Everyman");
    assert_eq!(mllp.send(&adt).await.code(), "AA");
    // a lab's transaction: the ordering physician with an initial and no NPI, at the
    // hospital under its legal name
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:9d3f1b6a-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Organization", "name": "Good Health Hospital, Inc.",
                      "address": [{"city": "Springfield"}]},
         "request": {"method": "POST", "url": "Organization"}},
        {"fullUrl": "urn:uuid:9d3f1b6a-0000-4000-8000-000000000002",
         "resource": {"resourceType": "Practitioner",
                      "identifier": [{"system": "urn:lab:staff", "value": "W-77"}],
                      "name": [{"family": "WELBY", "given": ["M"]}]},
         "request": {"method": "POST", "url": "Practitioner"}},
        {"resource": {"resourceType": "PractitionerRole",
                      "practitioner": {"reference": "urn:uuid:9d3f1b6a-0000-4000-8000-000000000002"},
                      "organization": {"reference": "urn:uuid:9d3f1b6a-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "PractitionerRole"}}]});
    let r = app.post("", &tx).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let made: Vec<String> = r.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["location"].as_str().unwrap().to_string())
        .collect();
    let id = |at: &str| at.split('/').nth(1).unwrap().to_string();
    let (lab_org, lab, lab_role) = (id(&made[0]), id(&made[1]), id(&made[2]));
    app.mpi_settled().await;

    let by_npi = app
        .get(&format!("/Practitioner?identifier={NPI}|1234"))
        .await;
    let mut v2: Vec<String> = crate::helpers::matched_ids(&by_npi.json());
    v2.retain(|p| *p != rest);
    assert_eq!(
        v2.len(),
        1,
        "the golden record carries no NPI: {}",
        by_npi.text
    );
    let v2 = v2.remove(0);

    let of_rest = filed(&app, "Practitioner", &rest).await;
    let provider = of_rest["provider"].as_str().unwrap().to_string();
    let of_v2 = filed(&app, "Practitioner", &v2).await;
    assert_eq!(of_v2["provider"], provider.as_str(), "{of_v2}");
    let of_lab = filed(&app, "Practitioner", &lab).await;
    assert_eq!(of_lab["provider"], provider.as_str(), "{of_lab}");
    // why, in each record's link
    let rules: Vec<&str> = [&of_rest, &of_v2, &of_lab]
        .iter()
        .map(|f| f["link"]["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"npi"), "{rules:?}");
    assert_eq!(of_lab["link"]["rule"], "name-and-organization", "{of_lab}");
    // the hospital under two names is one organization
    let of_hospital = filed(&app, "Organization", &hospital).await;
    let of_lab_org = filed(&app, "Organization", &lab_org).await;
    assert_eq!(of_hospital["provider"], of_lab_org["provider"]);
    assert_eq!(of_lab_org["link"]["rule"], "name-and-address");

    // the golden Practitioner: tagged, the enterprise id alone, naming its three records
    let golden = app.get(&format!("/Practitioner/{provider}")).await;
    assert_eq!(golden.status, 200, "{}", golden.text);
    let golden = golden.json();
    let tag = &golden["meta"]["tag"][0];
    assert_eq!(
        format!(
            "{}|{}",
            tag["system"].as_str().unwrap(),
            tag["code"].as_str().unwrap()
        ),
        TAG
    );
    assert_eq!(
        golden["identifier"][0]["system"],
        "http://emrsync.org/fhir/sid/provider"
    );
    assert_eq!(golden["identifier"].as_array().unwrap().len(), 1);
    let mut expected: Vec<String> = [&rest, &v2, &lab]
        .iter()
        .map(|i| format!("Practitioner/{i}"))
        .collect();
    expected.sort();
    assert_eq!(sources(&golden), expected);
    assert_eq!(golden["telecom"][0]["value"], "217-555-0100", "{golden}");
    let by_tag = app.get(&format!("/Practitioner?_tag={TAG}")).await;
    assert_eq!(
        crate::helpers::matched_ids(&by_tag.json()),
        vec![provider.clone()]
    );

    // the two roles (the doctor at the hospital, from each side) are one, and the golden
    // role points at the golden doctor and hospital
    let of_role = filed(&app, "PractitionerRole", &rest_role).await;
    let of_lab_role = filed(&app, "PractitionerRole", &lab_role).await;
    assert_eq!(
        of_role["provider"], of_lab_role["provider"],
        "{of_role} {of_lab_role}"
    );
    let golden_role = app
        .get(&format!(
            "/PractitionerRole/{}",
            of_role["provider"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(
        golden_role["practitioner"]["reference"],
        format!("Practitioner/{provider}")
    );
    assert_eq!(
        golden_role["organization"]["reference"],
        format!("Organization/{}", of_hospital["provider"].as_str().unwrap())
    );

    // no source writes over a golden record, nor carries the tag
    let mut over = golden.clone();
    over["name"] = json!([{"family": "Mallory"}]);
    let r = app.put(&format!("/Practitioner/{provider}"), &over).await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = app
        .post(
            "/Practitioner",
            &json!({"resourceType": "Practitioner", "meta": {"tag": [
                {"system": "http://emrsync.org/fhir/CodeSystem/mpi", "code": "golden-record"}]}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);

    // a different NPI under the same name is another doctor, and nobody is asked
    let (other, _) = app
        .create(&json!({"resourceType": "Practitioner",
                        "identifier": [{"system": NPI, "value": "9999"}],
                        "name": [{"family": "Welby", "given": ["Marcus"]}]}))
        .await;
    app.mpi_settled().await;
    assert_ne!(
        filed(&app, "Practitioner", &other).await["provider"],
        provider.as_str()
    );
    // a deleted record leaves its provider
    assert_eq!(
        app.delete(&format!("/Practitioner/{lab}")).await.status,
        200
    );
    app.mpi_settled().await;
    let golden = app.get(&format!("/Practitioner/{provider}")).await.json();
    assert_eq!(sources(&golden).len(), 2, "{golden}");
}

async fn unsure_pairs_wait_for_a_person(app: TestApp) {
    let doctor = |phone: &str| {
        json!({"resourceType": "Practitioner",
               "name": [{"family": "Okafor", "given": ["Adaeze"]}],
               "telecom": [{"system": "phone", "value": phone}]})
    };
    let (a, _) = app.create(&doctor("555-0001")).await;
    let (b, _) = app.create(&doctor("555-0002")).await;
    app.mpi_settled().await;
    // the same name, and nothing else known: a person decides
    assert_ne!(
        filed(&app, "Practitioner", &a).await["provider"],
        filed(&app, "Practitioner", &b).await["provider"]
    );
    let list = app
        .get_url(&format!("{}/admin/providers/reviews", app.root))
        .await
        .json();
    let reviews = list["reviews"].as_array().unwrap();
    assert_eq!(reviews.len(), 1, "{list}");
    let review = &reviews[0];
    assert_eq!(review["grade"], "possible");
    assert_eq!(review["rule"], "name");
    let mut pair = vec![
        review["record"]["id"].as_str().unwrap().to_string(),
        review["other"]["id"].as_str().unwrap().to_string(),
    ];
    pair.sort();
    assert_eq!(pair, crate::helpers::sorted(vec![a.clone(), b.clone()]));
    assert!(
        review["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["field"] == "organization" && f["level"] == "unknown"),
        "{review}"
    );
    let id = review["id"].as_str().unwrap().to_string();
    let decide = |decision: &str| {
        let (app, id, decision) = (&app, id.clone(), decision.to_string());
        async move {
            app.send(
                app.client
                    .post(format!("{}/admin/providers/reviews/{id}", app.root))
                    .json(&json!({"decision": decision})),
            )
            .await
        }
    };
    assert_eq!(decide("maybe").await.status, 400);
    let r = decide("same").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(decide("different").await.status, 409, "decided: undo first");
    app.mpi_settled().await;
    let (of_a, of_b) = (
        filed(&app, "Practitioner", &a).await,
        filed(&app, "Practitioner", &b).await,
    );
    assert_eq!(of_a["provider"], of_b["provider"]);
    let decided = if of_a["link"]["rule"] == "decision" {
        &of_a
    } else {
        &of_b
    };
    assert_eq!(decided["link"]["rule"], "decision", "{of_a} {of_b}");
    assert!(decided["link"]["decidedBy"].is_string(), "{decided}");
    let provider = of_a["provider"].as_str().unwrap();
    let golden = app.get(&format!("/Practitioner/{provider}")).await;
    assert_eq!(golden.status, 200, "{}", golden.text);
    // the rules never overrule it: a new version of one record keeps the pair together
    let mut newer = doctor("555-0003");
    newer["id"] = json!(a);
    assert_eq!(
        app.put(&format!("/Practitioner/{a}"), &newer).await.status,
        200
    );
    app.mpi_settled().await;
    assert_eq!(filed(&app, "Practitioner", &a).await["provider"], provider);
    // undone: apart again, the pair open, each history saying so
    let undo = app
        .send(
            app.client
                .post(format!("{}/admin/providers/reviews/{id}/undo", app.root)),
        )
        .await;
    assert_eq!(undo.status, 200, "{}", undo.text);
    app.mpi_settled().await;
    let (of_a, of_b) = (
        filed(&app, "Practitioner", &a).await,
        filed(&app, "Practitioner", &b).await,
    );
    assert_ne!(of_a["provider"], of_b["provider"]);
    let moved = if of_a["history"].as_array().unwrap().len() > 1 {
        &of_a
    } else {
        &of_b
    };
    let actions: Vec<&str> = moved["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.last(), Some(&"unlinked"), "{moved}");
    let open = app
        .get_url(&format!("{}/admin/providers/reviews", app.root))
        .await
        .json();
    assert_eq!(open["reviews"][0]["id"], id.as_str());
    // a review that does not exist, and a kind the registry does not hold
    let r = app
        .send(
            app.client
                .post(format!("{}/admin/providers/reviews/nope", app.root))
                .json(&json!({"decision": "same"})),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .get_url(&format!("{}/admin/providers/Patient/{a}", app.root))
        .await;
    assert_eq!(r.status, 400);
}

crate::on_both_backends_with!(
    spawn,
    one_doctor_from_three_sources_is_one_provider,
    unsure_pairs_wait_for_a_person,
);
