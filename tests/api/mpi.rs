//! The master patient index as clients meet it: Patients written from three sources (REST,
//! an HL7v2 ADT, a transaction) are filed as they are written, and `Patient/$match` finds the
//! person behind a description with realistic errors, graded and explained; twins go to a
//! person, not to a link; a patient-scoped token sees no one else through it.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::mllp_client::Mllp;
use serde_json::{Value, json};

async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |s| s.mllp = Some("127.0.0.1:0".into())).await
}

fn patient(given: &str, family: &str, birth: &str, line: &str, zip: &str) -> Value {
    json!({"resourceType": "Patient",
           "name": [{"family": family, "given": [given]}],
           "gender": "female", "birthDate": birth,
           "address": [{"line": [line], "city": "Springfield", "postalCode": zip}]})
}

fn asked(p: Value, extra: &[Value]) -> Value {
    let mut parameter = vec![json!({"name": "resource", "resource": p})];
    parameter.extend_from_slice(extra);
    json!({"resourceType": "Parameters", "parameter": parameter})
}

/// The grade, score and explanation of each result: (id, grade, score, detail).
fn results(bundle: &Value) -> Vec<(String, String, f64, Value)> {
    assert_eq!(bundle["type"], "searchset", "{bundle}");
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let ext = e["search"]["extension"].as_array().unwrap();
            let grade = ext
                .iter()
                .find(|x| x["url"].as_str().unwrap().ends_with("match-grade"))
                .unwrap();
            let detail = ext
                .iter()
                .find(|x| x["url"].as_str().unwrap().ends_with("match-detail"))
                .unwrap();
            (
                e["resource"]["id"].as_str().unwrap().to_string(),
                grade["valueCode"].as_str().unwrap().to_string(),
                e["search"]["score"].as_f64().unwrap(),
                detail.clone(),
            )
        })
        .collect()
}

/// The level a field agreed at, in a result's detail.
fn level(detail: &Value, field: &str) -> Option<String> {
    detail["extension"].as_array()?.iter().find_map(|x| {
        let parts = x["extension"].as_array()?;
        let name = parts.iter().find(|p| p["url"] == "name")?;
        (name["valueCode"] == field).then(|| {
            parts.iter().find(|p| p["url"] == "level").unwrap()["valueCode"]
                .as_str()
                .unwrap()
                .to_string()
        })
    })
}

async fn patients_from_every_source_are_matched_graded_and_explained(app: TestApp) {
    // REST
    let (rest_id, _) = app
        .create(&patient(
            "Michaela",
            "Neumann",
            "1965-11-11",
            "8 Stanley Street",
            "62701",
        ))
        .await;
    for (g, f, d, l, z) in [
        (
            "Courtney",
            "Painter",
            "1961-12-14",
            "12 Pinkerton Circuit",
            "62702",
        ),
        (
            "Charles",
            "Green",
            "1948-09-30",
            "38 Salkauskas Crescent",
            "62703",
        ),
    ] {
        app.create(&patient(g, f, d, l, z)).await;
    }
    // an HL7v2 admission of another person, and a transaction with a third
    let adt = "MSH|^~\\&|ADT|GOOD HEALTH|EMRSYNC|HUB|20261125120000||ADT^A01^ADT_A01|MPI-1|P|2.5.1\r\
               EVN|A01|20261125120000\r\
               PID|1||MPI-MRN-1^^^GH&1.2.840.114350.1&ISO^MR||Parr^Vanessa||19751119|F|||905 Macquoid Place^^Springfield^IL^62704\r\
               PV1|1|I|4W^401^B^GOOD HEALTH||||||||||||||||MPI-V-1^^^GH&1.2.840.114350.1&ISO^VN\r";
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    assert_eq!(mllp.send(adt).await.code(), "AA");
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": patient("Mitchell", "Brown", "1956-04-09", "7 Wallaby Place", "62705"),
        "request": {"method": "POST", "url": "Patient"}}]});
    assert_eq!(app.post("", &tx).await.status, 200);

    // each source's Patient is in the index: a typo'd description finds each, certain
    for (described, expect_family) in [
        (
            patient("Micheala", "Neuman", "1965-11-11", "8 Stanley St", "62701"),
            "Neumann",
        ),
        (
            patient("Vanessa", "Parr", "1975-11-19", "905 Macquoid Pl", "62704"),
            "Parr",
        ),
        (
            patient("Mitchel", "Brown", "1956-04-09", "7 Wallaby Place", "62705"),
            "Brown",
        ),
    ] {
        let r = app.post("/Patient/$match", &asked(described, &[])).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let found = results(&r.json());
        assert!(!found.is_empty(), "{expect_family}: {}", r.text);
        let (id, grade, score, _) = &found[0];
        let best = app.get(&format!("/Patient/{id}")).await.json();
        assert_eq!(best["name"][0]["family"], expect_family, "{}", r.text);
        assert_eq!(grade, "certain", "{}", r.text);
        assert!(*score >= 0.99, "{score}");
    }
    // explained: which fields agreed, at what level
    let r = app
        .post(
            "/Patient/$match",
            &asked(
                patient("Micheala", "Neuman", "1965-11-11", "8 Stanley St", "62701"),
                &[],
            ),
        )
        .await;
    let (id, _, _, detail) = &results(&r.json())[0];
    assert_eq!(id, &rest_id);
    assert_eq!(level(detail, "birth").as_deref(), Some("exact"), "{detail}");
    assert_eq!(
        level(detail, "family").as_deref(),
        Some("close"),
        "{detail}"
    );
    assert_eq!(level(detail, "given").as_deref(), Some("close"), "{detail}");

    // a twin: same family, birth date and address, another given name: at most probable
    let twin = patient(
        "Sophie",
        "Neumann",
        "1965-11-11",
        "8 Stanley Street",
        "62701",
    );
    let r = app.post("/Patient/$match", &asked(twin.clone(), &[])).await;
    let found = results(&r.json());
    assert_eq!(found[0].0, rest_id, "{}", r.text);
    assert_ne!(found[0].1, "certain", "{}", r.text);
    // and onlyCertainMatches leaves it out
    let only = json!({"name": "onlyCertainMatches", "valueBoolean": true});
    let r = app.post("/Patient/$match", &asked(twin, &[only])).await;
    assert!(results(&r.json()).is_empty(), "{}", r.text);

    // a stranger matches no one
    let r = app
        .post(
            "/Patient/$match",
            &asked(
                patient("Zed", "Quimby", "1990-01-01", "1 Nowhere Rd", "99999"),
                &[],
            ),
        )
        .await;
    assert!(results(&r.json()).is_empty(), "{}", r.text);

    // an update moves the Patient to its new keys: the old description no longer finds it
    let mut moved = app.get(&format!("/Patient/{rest_id}")).await.json();
    moved["name"] = json!([{"family": "Oakes", "given": ["Michaela"]}]);
    moved["birthDate"] = json!("1966-01-02");
    moved["address"] = json!([{"line": ["1 Elm St"], "city": "Dapto", "postalCode": "50000"}]);
    assert_eq!(
        app.put(&format!("/Patient/{rest_id}"), &moved).await.status,
        200
    );
    let r = app
        .post(
            "/Patient/$match",
            &asked(
                patient(
                    "Michaela",
                    "Neumann",
                    "1965-11-11",
                    "8 Stanley Street",
                    "62701",
                ),
                &[],
            ),
        )
        .await;
    assert!(
        results(&r.json()).iter().all(|(id, ..)| id != &rest_id),
        "{}",
        r.text
    );
}

async fn match_refuses_what_it_cannot_read_and_confines_a_patient_token(app: TestApp) {
    let (a, _) = app
        .create(&patient(
            "Ada",
            "Lovelace",
            "1915-12-10",
            "1 St James Sq",
            "62701",
        ))
        .await;
    let (b, _) = app
        .create(&patient(
            "Ada",
            "Lovelace",
            "1915-12-10",
            "1 St James Sq",
            "62701",
        ))
        .await;
    for (body, says) in [
        (
            asked(
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
                &[],
            ),
            "Observation",
        ),
        (
            json!({"resourceType": "Parameters", "parameter": [{"name": "count", "valueInteger": 2}]}),
            "missing",
        ),
        (
            json!({"resourceType": "Basic", "code": {"text": "x"}}),
            "Parameters",
        ),
        (
            asked(
                patient("A", "B", "2000-01-01", "x", "1"),
                &[json!({"name": "limit", "valueInteger": 1})],
            ),
            "limit",
        ),
    ] {
        let r = app.post("/Patient/$match", &body).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.json()["resourceType"], "OperationOutcome");
        assert!(r.text.contains(says), "{says}: {}", r.text);
    }
    // an invalid Patient is refused as a write of it would be
    let bad = asked(
        json!({"resourceType": "Patient", "birthDate": "not a date"}),
        &[],
    );
    let r = app.post("/Patient/$match", &bad).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("Patient.birthDate"), "{}", r.text);

    // Patient A's own token: the records are alike, but B is not A's to see
    let token = app.token_for("patient/*.rs", Some(&a));
    let described = asked(
        patient("Ada", "Lovelace", "1915-12-10", "1 St James Sq", "62701"),
        &[],
    );
    let r = app
        .send_as(
            &token,
            reqwest::Method::POST,
            "/Patient/$match",
            Some(&described),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ids: Vec<String> = results(&r.json()).into_iter().map(|x| x.0).collect();
    assert_eq!(ids, std::slice::from_ref(&a), "{}", r.text);
    // a system token sees both
    let r = app.post("/Patient/$match", &described).await;
    let mut ids: Vec<String> = results(&r.json()).into_iter().map(|x| x.0).collect();
    ids.sort();
    let mut both = vec![a, b];
    both.sort();
    assert_eq!(ids, both);
    // count bounds the answer
    let one = json!({"name": "count", "valueInteger": 1});
    let r = app
        .post(
            "/Patient/$match",
            &asked(
                patient("Ada", "Lovelace", "1915-12-10", "1 St James Sq", "62701"),
                &[one],
            ),
        )
        .await;
    assert_eq!(results(&r.json()).len(), 1, "{}", r.text);
    // a body that is no JSON at all is a 400 that says so, as any FHIR write's
    let r = app
        .send(
            app.client
                .post(app.url("/Patient/$match"))
                .header("content-type", "application/fhir+json")
                .body("{\"resourceType\": \"Parameters\", "),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    // the CapabilityStatement says Patient has $match
    let cs = app.get("/metadata").await.json();
    let patient_ops = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()["operation"]
        .clone();
    assert!(
        patient_ops
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "match"),
        "{patient_ops}"
    );
    // a deleted Patient is no longer anyone's match
    assert!(app.delete(&format!("/Patient/{}", both[1])).await.status < 300);
    let r = app.post("/Patient/$match", &described).await;
    let ids: Vec<String> = results(&r.json()).into_iter().map(|x| x.0).collect();
    assert_eq!(ids, std::slice::from_ref(&both[0]), "{}", r.text);
    // a token that may not search Patients may not match
    let token = app.token_for("system/Observation.rs", None);
    let r = app
        .send_as(
            &token,
            reqwest::Method::POST,
            "/Patient/$match",
            Some(&described),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
}

async fn links_follow_the_matcher_until_a_person_decides(app: TestApp) {
    let admin = |path: &str| format!("{}{path}", app.root);
    let get = |path: String| {
        let client = app.client.clone();
        async move {
            let r = client.get(path).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    // one person from three sources: REST, an HL7v2 admission with a typo, a transaction
    let (a, _) = app
        .create(&patient(
            "Michaela",
            "Neumann",
            "1965-11-11",
            "8 Stanley Street",
            "62701",
        ))
        .await;
    let adt = "MSH|^~\\&|ADT|GOOD HEALTH|EMRSYNC|HUB|20261125120000||ADT^A04^ADT_A01|MPI-L-1|P|2.5.1\r\
               EVN|A04|20261125120000\r\
               PID|1||MPI-L-1^^^GH&1.2.840.114350.1&ISO^MR||Neuman^Michaela||19651111|F|||8 Stanley St^^Springfield^IL^62701\r\
               PV1|1|O|CLINIC^1^A^GOOD HEALTH||||||||||||||||MPI-LV-1^^^GH&1.2.840.114350.1&ISO^VN\r";
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    assert_eq!(mllp.send(adt).await.code(), "AA");
    let found = app.get("/Patient?identifier=MPI-L-1").await.json();
    let b = found["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": patient("Micheala", "Neumann", "1965-11-11", "8 Stanley Street", "62701"),
        "request": {"method": "POST", "url": "Patient"}}]});
    let r = app.post("", &tx).await;
    let c = r.json()["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .split('/')
        .nth(1)
        .unwrap()
        .to_string();
    app.mpi_settled().await;
    let of_a = get(admin(&format!("/admin/mpi/patients/{a}"))).await;
    let mut members: Vec<String> = serde_json::from_value(of_a["members"].clone()).unwrap();
    members.sort();
    let mut all = vec![a.clone(), b.clone(), c.clone()];
    all.sort();
    assert_eq!(members, all, "{of_a}");
    app.mpi_settled().await;
    let of_b = get(admin(&format!("/admin/mpi/patients/{b}"))).await;
    assert_eq!(of_b["grade"], "certain", "{of_b}");
    assert_eq!(of_b["history"][0]["action"], "linked", "{of_b}");

    // a twin: same family, birth date and address, another given name: a review, no link
    let (twin, _) = app
        .create(&patient(
            "Sophie",
            "Neumann",
            "1965-11-11",
            "8 Stanley Street",
            "62701",
        ))
        .await;
    app.mpi_settled().await;
    let of_twin = get(admin(&format!("/admin/mpi/patients/{twin}"))).await;
    assert_eq!(of_twin["members"], json!([twin]), "{of_twin}");
    app.mpi_settled().await;
    let open = get(admin("/admin/mpi/reviews?status=open")).await;
    let pairs: Vec<&Value> = open["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["patient"]["id"] == twin.as_str() || r["other"]["id"] == twin.as_str())
        .collect();
    assert!(!pairs.is_empty(), "{open}");
    let first = pairs[0];
    assert!(
        first["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["field"] == "given" && f["level"] == "differ"),
        "{first}"
    );
    assert_eq!(first["patient"]["resource"]["resourceType"], "Patient");

    // a person decides: not the same person; the decision holds when the twin is written again
    let id = first["id"].as_str().unwrap();
    let r = app
        .client
        .post(admin(&format!("/admin/mpi/reviews/{id}")))
        .json(&json!({"decision": "different"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let decided: Value = r.json().await.unwrap();
    assert_eq!(decided["status"], "different", "{decided}");
    let mut again = app.get(&format!("/Patient/{twin}")).await.json();
    again["telecom"] = json!([{"system": "phone", "value": "217-555-0101"}]);
    assert_eq!(
        app.put(&format!("/Patient/{twin}"), &again).await.status,
        200
    );
    app.mpi_settled().await;
    let of_twin = get(admin(&format!("/admin/mpi/patients/{twin}"))).await;
    assert_eq!(of_twin["members"], json!([twin]), "{of_twin}");
    app.mpi_settled().await;
    let still = get(admin("/admin/mpi/reviews?status=different")).await;
    assert!(
        still["reviews"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id),
        "{still}"
    );
    // a decision on no review, and a decision that is neither
    let r = app
        .client
        .post(admin("/admin/mpi/reviews/nope"))
        .json(&json!({"decision": "same"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .post(admin(&format!("/admin/mpi/reviews/{id}")))
        .json(&json!({"decision": "maybe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // a body that is no JSON: this API's answer, saying what it takes
    let r = app
        .client
        .post(admin(&format!("/admin/mpi/reviews/{id}")))
        .body("same")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let said: Value = r.json().await.unwrap();
    assert!(
        said["error"].as_str().unwrap().contains("decision"),
        "{said}"
    );

    // a correction: the HL7v2 record was someone else after all; it leaves the person, said so
    let mut other = app.get(&format!("/Patient/{b}")).await.json();
    other["name"] = json!([{"family": "Quimby", "given": ["Zed"]}]);
    other["birthDate"] = json!("1990-01-01");
    other["address"] = json!([{"line": ["1 Nowhere Rd"], "city": "Dapto", "postalCode": "99999"}]);
    assert_eq!(app.put(&format!("/Patient/{b}"), &other).await.status, 200);
    app.mpi_settled().await;
    let of_b = get(admin(&format!("/admin/mpi/patients/{b}"))).await;
    assert_eq!(of_b["members"], json!([b]), "{of_b}");
    let actions: Vec<&str> = of_b["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["linked", "unlinked"], "{of_b}");
    app.mpi_settled().await;
    let of_a = get(admin(&format!("/admin/mpi/patients/{a}"))).await;
    assert!(
        !of_a["members"].as_array().unwrap().contains(&json!(b)),
        "{of_a}"
    );

    // a person decides two records are one after all: linked, and the matcher leaves it so
    app.mpi_settled().await;
    let open = get(admin("/admin/mpi/reviews?status=open")).await;
    let with_a = open["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            let ids = [r["patient"]["id"].as_str(), r["other"]["id"].as_str()];
            ids.contains(&Some(twin.as_str())) && ids.contains(&Some(a.as_str()))
        })
        .unwrap_or_else(|| panic!("{open}"));
    let rid = with_a["id"].as_str().unwrap();
    let r = app
        .client
        .post(admin(&format!("/admin/mpi/reviews/{rid}")))
        .json(&json!({"decision": "same"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.mpi_settled().await;
    let of_twin = get(admin(&format!("/admin/mpi/patients/{twin}"))).await;
    assert!(
        of_twin["members"].as_array().unwrap().contains(&json!(a)),
        "{of_twin}"
    );
    assert_eq!(of_twin["rule"], "decision");
    assert_eq!(of_twin["decidedBy"], "client tests");
    assert_eq!(
        of_twin["history"].as_array().unwrap().last().unwrap()["action"],
        "decided"
    );

    // the review queue holds patient data: a patient-scoped token may not read it
    let token = app.token_for("patient/*.rs", Some(&a));
    let r = app
        .anonymous
        .get(admin("/admin/mpi/reviews"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// A record written with a nickname (Bill for William) is found, and the explanation says so.
async fn a_nickname_is_a_match(app: TestApp) {
    let (william, _) = app
        .create(&patient(
            "William",
            "Hargreaves",
            "1949-04-30",
            "17 Quarry Lane",
            "62702",
        ))
        .await;
    app.mpi_settled().await;
    let r = app
        .post(
            "/Patient/$match",
            &asked(
                patient(
                    "Bill",
                    "Hargreaves",
                    "1949-04-30",
                    "17 Quarry Lane",
                    "62702",
                ),
                &[],
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let found = results(&r.json());
    let (id, grade, _, detail) = found.first().unwrap_or_else(|| panic!("{}", r.text));
    assert_eq!(id, &william);
    assert_eq!(grade, "certain", "{detail}");
    assert_eq!(
        level(detail, "given").as_deref(),
        Some("nickname"),
        "{detail}"
    );
}

/// Two persons a guard keeps apart (twins: another given name), then a record certain with
/// both (it gives no given name): it joins one, and the pair with the other's record goes
/// before a person, who decides whether the persons are one; the matcher merges no persons.
async fn a_record_certain_with_two_persons_puts_them_before_a_person(app: TestApp) {
    let of_the_family = |given: &str| {
        let mut p = patient(given, "Wisniewska", "1958-06-02", "3 Orchard Row", "62711");
        if given.is_empty() {
            p["name"][0].as_object_mut().unwrap().remove("given");
        }
        p
    };
    let mut ids = Vec::new();
    // one after the other, each linked before the next arrives
    for given in ["Agnieszka", "Malgorzata", ""] {
        ids.push(app.create(&of_the_family(given)).await.0);
        app.mpi_settled().await;
    }
    let [first, second, third] = <[String; 3]>::try_from(ids).unwrap();
    let app = &app;
    let of = |id: String| async move {
        let url = format!("{}/admin/mpi/patients/{id}", app.root);
        app.get_url(&url).await.json()
    };
    let (a, b, c) = (
        of(first.clone()).await,
        of(second.clone()).await,
        of(third.clone()).await,
    );
    assert_ne!(
        a["person"], b["person"],
        "the twins are two persons: {a}\n{b}"
    );
    let joined = if c["person"] == a["person"] {
        &second
    } else {
        &first
    };
    assert!(
        c["person"] == a["person"] || c["person"] == b["person"],
        "{c}"
    );
    let open = app
        .get_url(&format!("{}/admin/mpi/reviews?status=open", app.root))
        .await
        .json();
    let with = |x: &str, y: &str| {
        open["reviews"].as_array().unwrap().iter().any(|r| {
            let pair = [r["patient"]["id"].as_str(), r["other"]["id"].as_str()];
            pair.contains(&Some(x)) && pair.contains(&Some(y))
        })
    };
    assert!(with(&first, &second), "the twins' pair: {open}");
    assert!(with(&third, joined), "the other person's record: {open}");
    // that pair's records are two persons', one with another record: deciding "same" would
    // move one record, so the review names the merge that joins the persons
    let review = open["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            let pair = [r["patient"]["id"].as_str(), r["other"]["id"].as_str()];
            pair.contains(&Some(third.as_str())) && pair.contains(&Some(joined.as_str()))
        })
        .unwrap();
    let hint = &review["personsMayBeOne"];
    assert_eq!(hint["merge"]["url"], "/admin/mpi/merges", "{review}");
    assert_eq!(hint["merge"]["body"]["into"], third.as_str(), "{hint}");
    assert_eq!(hint["merge"]["body"]["from"], joined.as_str(), "{hint}");
    assert_eq!(hint["persons"][0]["id"], c["person"], "{hint}");
    assert_eq!(hint["persons"][0]["records"], 2, "{hint}");
    assert_eq!(hint["persons"][1]["records"], 1, "{hint}");
    // the CLI's list says the same, with the command to run
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_emrsync"));
    cmd.args(["mpi", "reviews", "--data-dir"])
        .arg(app.dir.path());
    if let emrsync::store::Database::Postgres(url) = &app.database {
        cmd.args(["--database-url", url.expose()]);
    }
    let listed = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
    assert!(
        listed.contains("two persons (2 and 1 records)")
            && listed.contains(&format!("emrsync mpi merge {joined} {third}")),
        "{listed}"
    );
    let merged = app
        .send(
            app.client
                .post(format!("{}/admin/mpi/merges", app.root))
                .header("content-type", "application/json")
                .body(hint["merge"]["body"].to_string()),
        )
        .await;
    assert!((200..300).contains(&merged.status), "{}", merged.text);
    let mut persons = Vec::new();
    for id in [&first, &second, &third] {
        persons.push(of(id.clone()).await["person"].clone());
    }
    assert!(persons.iter().all(|p| *p == persons[0]), "{persons:?}");
}

crate::on_both_backends_with!(
    spawn,
    a_record_certain_with_two_persons_puts_them_before_a_person,
    a_nickname_is_a_match,
    patients_from_every_source_are_matched_graded_and_explained,
    match_refuses_what_it_cannot_read_and_confines_a_patient_token,
    links_follow_the_matcher_until_a_person_decides,
    the_index_draws_its_sample_at_random,
);

/// The sample the index learns its own `u` from (`identity::chance`): about the size asked,
/// drawn anew each time, everyone when the index is smaller. (On SQLite it once asked for a
/// rowid `mpi_people` does not have, and the server never learnt.)
async fn the_index_draws_its_sample_at_random(app: TestApp) {
    let entries: Vec<Value> = (0..400)
        .map(|i| {
            json!({"request": {"method": "POST", "url": "Patient"}, "resource": {
                "resourceType": "Patient", "gender": if i % 2 == 0 { "female" } else { "male" },
                "name": [{"family": format!("Sample{i}"), "given": ["Ann"]}],
                "birthDate": format!("19{:02}-0{}-1{}", i % 100, 1 + i % 9, i % 10)}})
        })
        .collect();
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    assert_eq!(app.post("", &tx).await.status, 200);
    app.mpi_settled().await;
    let mut conn = app.db();
    let family = |p: &emrsync::identity::person::Person| format!("{p:?}");
    let first: Vec<String> = emrsync::identity::index::sample(&mut conn, 100)
        .unwrap()
        .iter()
        .map(family)
        .collect();
    assert!((40..=200).contains(&first.len()), "{} drawn", first.len());
    let second: Vec<String> = emrsync::identity::index::sample(&mut conn, 100)
        .unwrap()
        .iter()
        .map(family)
        .collect();
    assert_ne!(first, second, "the same sample twice");
    let all = emrsync::identity::index::sample(&mut conn, 1000).unwrap();
    assert!(all.len() >= 400, "{} of 400 and more", all.len());
}

/// A store whose Patients the index does not hold (written before the MPI existed, or with its
/// tables rebuilt by an upgrade) has them filed and linked when a server starts on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patients_the_index_lacks_are_filed_and_linked_at_start() {
    use diesel::RunQueryDsl;
    let before = spawn(Backend::Sqlite).await;
    let p = patient(
        "Michaela",
        "Neumann",
        "1965-11-11",
        "8 Stanley Street",
        "62701",
    );
    let (a, _) = before.create(&p).await;
    let (b, _) = before.create(&p).await;
    before.mpi_settled().await;
    let mut db = before.db();
    for table in ["mpi_keys", "mpi_people", "mpi_links", "mpi_link_history"] {
        diesel::sql_query(format!("DELETE FROM {table}"))
            .execute(&mut db)
            .unwrap();
    }
    let status = before.get_url(&format!("{}/admin/mpi", before.root)).await;
    assert_eq!(status.json()["indexed"], 0, "{}", status.text);

    let data = before.dir.path().to_path_buf();
    let after = spawn_with(Backend::Sqlite, |s| {
        s.store = emrsync::config::StoreArgs::new(data, None)
    })
    .await;
    after.mpi_settled().await;
    let status = after.get_url(&format!("{}/admin/mpi", after.root)).await;
    assert_eq!(status.json()["indexed"], 2, "{}", status.text);
    let of_a = after
        .get_url(&format!("{}/admin/mpi/patients/{a}", after.root))
        .await
        .json();
    let mut members: Vec<String> = serde_json::from_value(of_a["members"].clone()).unwrap();
    members.sort();
    let mut both = vec![a, b];
    both.sort();
    assert_eq!(members, both, "{of_a}");
    assert_eq!(of_a["history"][0]["who"], "matcher (refile)", "{of_a}");
}

/// `--no-mpi`: Patients and providers are written as ever, but neither filed nor linked, and
/// `$match` says why it cannot answer rather than answering nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_index_nothing_is_filed_and_match_is_refused() {
    let app = spawn_with(Backend::Sqlite, |s| s.no_mpi = true).await;
    let p = patient(
        "Ada",
        "Lovelace",
        "1815-12-10",
        "12 St James's Square",
        "SW1Y",
    );
    app.create(&p).await;
    app.create(&p).await;
    let (doctor, _) = app
        .create(&json!({"resourceType": "Practitioner", "name": [{"family": "Babbage"}]}))
        .await;
    let r = app.post("/Patient/$match", &asked(p, &[])).await;
    assert_eq!(r.status, 501, "{}", r.text);
    assert!(r.text.contains("--no-mpi"), "{}", r.text);
    let status = app.get_url(&format!("{}/admin/mpi", app.root)).await.json();
    assert_eq!(status["indexed"], 0, "{status}");
    assert_eq!(status["providersPending"], 0, "{status}");
    let filed = app
        .get_url(&format!(
            "{}/admin/providers/Practitioner/{doctor}",
            app.root
        ))
        .await;
    assert_eq!(filed.status, 404, "{}", filed.text);
    let r = app
        .get("/Patient?_tag=http://emrsync.org/fhir/CodeSystem/mpi|golden-record")
        .await;
    assert_eq!(crate::helpers::matched_ids(&r.json()).len(), 0);
}

/// A PostgreSQL store filling from empty has its planner's statistics taken by the linker (at
/// 500 Patients, then each eightfold growth), not a minute later by autovacuum: without them a
/// birth-date block walked every Patient's birth date (docs/performance.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statistics_are_taken_as_the_index_fills() {
    use diesel::RunQueryDsl;
    let app = spawn(Backend::Postgres).await;
    let entries: Vec<Value> = (0..520)
        .map(|n| {
            json!({"resource": patient("Ada", &format!("Stat{n}"), "1960-01-01", "1 Main St", "62701"),
                   "request": {"method": "POST", "url": "Patient"}})
        })
        .collect();
    let r = app
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    app.mpi_settled().await;
    #[derive(diesel::QueryableByName)]
    struct Analyzed {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut db = app.db();
    let mut seen = 0;
    for _ in 0..100 {
        let rows: Vec<Analyzed> = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_user_tables WHERE relname IN \
             ('search_date', 'search_token', 'mpi_keys', 'mpi_people') AND last_analyze IS NOT NULL",
        )
        .load(&mut db)
        .unwrap();
        seen = rows[0].n;
        if seen == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 4, "the linker's tables analyzed");
}
