//! Golden records as clients meet them: one person's records from REST and an HL7v2 ADT give
//! one enterprise Patient, tagged, with the best-known demographics by the survivorship rules,
//! linked to each record; it follows a new version and a correction, is never matched or
//! found by a source's MRN, and no source may write one.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::mllp_client::Mllp;
use serde_json::{Value, json};

const TAG: &str = "http://emrsync.org/fhir/CodeSystem/mpi|golden-record";

/// A server whose survivorship rules trust the REST client `tests` above the HL7v2 sender.
async fn spawn(backend: Backend) -> TestApp {
    let rules = std::env::temp_dir().join(format!("golden-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(
        &rules,
        json!({"sources": ["tests", "ADT@GOOD HEALTH"],
               "elements": {"name": "most-trusted", "birthDate": "most-trusted",
                            "gender": "most-trusted", "address": "most-recent",
                            "telecom": "most-recent"}})
        .to_string(),
    )
    .unwrap();
    let app = spawn_with(backend, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.mpi_golden = Some(rules.clone());
    })
    .await;
    // read at start: the file is no longer needed
    std::fs::remove_file(rules).unwrap();
    app
}

fn patient(family: &str, line: &str, mrn: &str) -> Value {
    json!({"resourceType": "Patient",
           "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": mrn}],
           "name": [{"family": family, "given": ["Michaela"]}],
           "gender": "female", "birthDate": "1965-11-11",
           "address": [{"line": [line], "city": "Springfield", "postalCode": "62701"}]})
}

/// The ids of the records a golden record links to.
fn linked(golden: &Value) -> Vec<String> {
    golden["link"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            assert_eq!(l["type"], "seealso", "{l}");
            let ext = &l["extension"][0];
            assert!(ext["url"].as_str().unwrap().ends_with("mpi-link"), "{l}");
            let grade = ext["extension"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["url"] == "grade")
                .unwrap();
            assert_eq!(grade["valueCode"], "certain", "{l}");
            let r = l["other"]["reference"].as_str().unwrap();
            r.strip_prefix("Patient/").unwrap().to_string()
        })
        .collect()
}

async fn golden_records_follow_their_persons(app: TestApp) {
    let admin = |path: String| format!("{}{path}", app.root);
    let (a, _) = app
        .create(&patient("Neumann", "8 Stanley Street", "G-1"))
        .await;
    // the same person from an HL7v2 sender: a typo in the family name, the address written shorter
    let adt = "MSH|^~\\&|ADT|GOOD HEALTH|EMRSYNC|HUB|20261125120000||ADT^A04^ADT_A01|MPI-G-1|P|2.5.1\r\
               EVN|A04|20261125120000\r\
               PID|1||MPI-G-1^^^GH&1.2.840.114350.1&ISO^MR||Neuman^Michaela||19651111|F|||8 Stanley St^^Springfield^IL^62701\r\
               PV1|1|O|CLINIC^1^A^GOOD HEALTH\r";
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    assert_eq!(mllp.send(adt).await.code(), "AA");
    let b = app.get("/Patient?identifier=MPI-G-1").await.json()["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // someone else: a person of one record, who has no golden record
    let (c, _) = app
        .create(
            &json!({"resourceType": "Patient", "name": [{"family": "Quimby", "given": ["Zed"]}],
                        "birthDate": "1990-01-01"}),
        )
        .await;
    app.mpi_settled().await;

    let of_a = app
        .get_url(&admin(format!("/admin/mpi/patients/{a}")))
        .await
        .json();
    let person = of_a["person"].as_str().unwrap().to_string();
    let golden = app.get(&format!("/Patient/{person}")).await;
    assert_eq!(golden.status, 200, "{}", golden.text);
    let golden = golden.json();
    let tags = golden["meta"]["tag"].as_array().unwrap();
    assert!(
        tags.iter().any(|t| format!(
            "{}|{}",
            t["system"].as_str().unwrap(),
            t["code"].as_str().unwrap()
        ) == TAG),
        "{golden}"
    );
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(linked(&golden), want, "{golden}");
    // the trusted source's name, the most recent address, the enterprise id alone
    assert_eq!(golden["name"][0]["family"], "Neumann", "{golden}");
    assert_eq!(golden["address"][0]["line"][0], "8 Stanley St", "{golden}");
    assert_eq!(golden["birthDate"], "1965-11-11");
    assert_eq!(
        golden["identifier"],
        json!([{"use": "official", "system": "http://emrsync.org/fhir/sid/person", "value": person}])
    );
    let of_c = app
        .get_url(&admin(format!("/admin/mpi/patients/{c}")))
        .await
        .json();
    let alone = of_c["person"].as_str().unwrap();
    assert_eq!(app.get(&format!("/Patient/{alone}")).await.status, 404);

    // read through identity: the golden record's $everything is every record's compartment
    // (the HL7v2 record's visit with it)
    let everything = app.get(&format!("/Patient/{person}/$everything")).await;
    assert_eq!(everything.status, 200, "{}", everything.text);
    let entries: Vec<(String, String)> = everything.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let r = &e["resource"];
            (
                r["resourceType"].as_str().unwrap().to_string(),
                r.to_string(),
            )
        })
        .collect();
    for id in [&a, &b, &person] {
        assert!(
            entries
                .iter()
                .any(|(t, r)| t == "Patient" && r.contains(&format!("\"id\":\"{id}\""))),
            "{id} in {entries:?}"
        );
    }
    assert!(
        entries
            .iter()
            .any(|(t, r)| t == "Encounter" && r.contains(&format!("Patient/{b}"))),
        "{entries:?}"
    );
    // a record's own $everything stays its own
    let own = app.get(&format!("/Patient/{a}/$everything")).await.text;
    assert!(!own.contains(&format!("Patient/{b}")), "{own}");

    // clients tell golden records from source records by the tag, and a source's MRN finds
    // its own record only
    let tagged = app.get(&format!("/Patient?_tag={TAG}")).await.json();
    assert_eq!(tagged["total"], 1, "{tagged}");
    assert_eq!(tagged["entry"][0]["resource"]["id"], person.as_str());
    let by_mrn = app.get("/Patient?identifier=G-1").await.json();
    assert_eq!(by_mrn["total"], 1, "{by_mrn}");
    // a token scoped to one record reads that record, never the golden record made with
    // another's, even through $everything
    let token = app.token_for("patient/*.rs", Some(&a));
    let read = |path: String| {
        let req = app.anonymous.get(app.url(&path)).bearer_auth(&token);
        async move { req.send().await.unwrap() }
    };
    let r = read(format!("/Patient/{person}")).await;
    assert!(matches!(r.status().as_u16(), 403 | 404), "{}", r.status());
    let r = read(format!("/Patient/{a}/$everything")).await;
    assert_eq!(r.status(), 200);
    let everything = r.text().await.unwrap();
    assert!(
        everything.contains(&a) && !everything.contains(&person),
        "{everything}"
    );
    // the matcher never offers a golden record
    let asked = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient("Neumann", "8 Stanley Street", "X")}]});
    let found = app.post("/Patient/$match", &asked).await.json();
    let ids: Vec<&str> = found["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&a.as_str()) && !ids.contains(&person.as_str()),
        "{found}"
    );
    // nor may a source write one
    let mut forged = patient("Neumann", "8 Stanley Street", "G-9");
    forged["meta"] = json!({"tag": [{"system": "http://emrsync.org/fhir/CodeSystem/mpi", "code": "golden-record"}]});
    let r = app.post("/Patient", &forged).await;
    assert!(matches!(r.status, 400 | 422), "{}", r.text);
    assert!(r.text.contains("golden-record"), "{}", r.text);

    // nor write over one, nor delete it: it is the person's records that change
    let mut over = app.get(&format!("/Patient/{person}")).await.json();
    over["meta"] = json!({});
    over["gender"] = json!("male");
    let r = app.put(&format!("/Patient/{person}"), &over).await;
    assert!(matches!(r.status, 400 | 422), "{}", r.text);
    assert!(r.text.contains("golden record"), "{}", r.text);
    let r = app.delete(&format!("/Patient/{person}")).await;
    assert!(matches!(r.status, 400 | 422), "{}", r.text);
    assert_eq!(app.get(&format!("/Patient/{person}")).await.status, 200);

    // a new version of a record: the golden record follows it
    let mut newer = app.get(&format!("/Patient/{a}")).await.json();
    newer["telecom"] = json!([{"system": "phone", "value": "217-555-0199"}]);
    assert_eq!(app.put(&format!("/Patient/{a}"), &newer).await.status, 200);
    app.mpi_settled().await;
    let golden = app.get(&format!("/Patient/{person}")).await.json();
    assert_eq!(golden["telecom"][0]["value"], "217-555-0199", "{golden}");
    assert_eq!(golden["meta"]["versionId"], "2", "{golden}");

    // a correction: the HL7v2 record was someone else; the golden record keeps the one left
    let mut other = app.get(&format!("/Patient/{b}")).await.json();
    other["name"] = json!([{"family": "Zuckerman", "given": ["Otto"]}]);
    other["birthDate"] = json!("1931-05-05");
    other["address"] = json!([{"line": ["1 Nowhere Rd"], "city": "Dapto", "postalCode": "99999"}]);
    assert_eq!(app.put(&format!("/Patient/{b}"), &other).await.status, 200);
    app.mpi_settled().await;
    let golden = app.get(&format!("/Patient/{person}")).await.json();
    assert_eq!(linked(&golden), vec![a], "{golden}");
    assert_eq!(golden["active"], true);
    assert_eq!(
        golden["address"][0]["line"][0], "8 Stanley Street",
        "{golden}"
    );
    // and its history says how it came to be
    let history = app.get(&format!("/Patient/{person}/_history")).await.json();
    assert_eq!(history["total"], 3, "{history}");
}

/// An HL7v2 merge (A40) of two records the matcher keeps apart: the prior record joins the
/// survivor's person as its sender decided (the matcher never moves it), the history says so,
/// and the person's golden record links both.
async fn a_merge_links_the_records_as_its_sender_says(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let a04 = |id: &str, mrn: &str, name: &str, birth: &str| {
        format!(
            "MSH|^~\\&|ADT|GOOD HEALTH|EMRSYNC|HUB|20261125120000||ADT^A04^ADT_A01|{id}|P|2.5.1\r\
             EVN|A04|20261125120000\r\
             PID|1||{mrn}^^^GH&1.2.840.114350.1&ISO^MR||{name}||{birth}|M\r\
             PV1|1|O|CLINIC^1^A^GOOD HEALTH\r"
        )
    };
    let sent = mllp
        .send(&a04("MG-1", "MRN-OLD", "Dupont^Adam", "19800214"))
        .await;
    assert_eq!(sent.code(), "AA");
    let sent = mllp
        .send(&a04("MG-2", "MRN-NEW", "Durand^Adrien", "19790412"))
        .await;
    assert_eq!(sent.code(), "AA");
    let id = |mrn: &'static str| {
        let app = &app;
        async move {
            app.get(&format!("/Patient?identifier={mrn}")).await.json()["entry"][0]["resource"]
                ["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let (old, new) = (id("MRN-OLD").await, id("MRN-NEW").await);
    app.mpi_settled().await;
    let of = |patient: String| {
        let app = &app;
        async move {
            app.get_url(&format!("{}/admin/mpi/patients/{patient}", app.root))
                .await
                .json()
        }
    };
    assert_ne!(
        of(old.clone()).await["person"],
        of(new.clone()).await["person"]
    );

    let a40 = "MSH|^~\\&|REG|GOOD HEALTH|EMRSYNC|HUB|20261125140000||ADT^A40^ADT_A39|MG-3|P|2.5.1\r\
               EVN|A40|20261125140000\r\
               PID|1||MRN-NEW^^^GH&1.2.840.114350.1&ISO^MR||Durand^Adrien||19790412|M\r\
               MRG|MRN-OLD^^^GH&1.2.840.114350.1&ISO^MR\r";
    assert_eq!(mllp.send(a40).await.code(), "AA");
    app.mpi_settled().await;
    let prior = of(old.clone()).await;
    let person = of(new.clone()).await["person"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(prior["person"], person.as_str(), "{prior}");
    assert_eq!(prior["rule"], "merge", "{prior}");
    assert_eq!(prior["decidedBy"], "REG@GOOD HEALTH", "{prior}");
    let last = prior["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "merged", "{prior}");
    assert!(last["reason"].as_str().unwrap().contains(&new), "{prior}");
    let golden = app.get(&format!("/Patient/{person}")).await.json();
    let mut want = vec![old, new];
    want.sort();
    assert_eq!(linked(&golden), want, "{golden}");

    // a record replaced by a Patient no source ever wrote is matched as any other record
    let (stray, _) = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Ortega", "given": ["Luz"]}],
                        "link": [{"type": "replaced-by", "other": {"reference": "Patient/no-such-patient"}}]}))
        .await;
    app.mpi_settled().await;
    let of_stray = of(stray).await;
    assert_eq!(of_stray["rule"], "new", "{of_stray}");
}

/// Two records of one person in one transaction (a birth date one digit apart, so no key the
/// search index holds joins them): they reach the linker in one batch, and are linked.
async fn records_of_one_person_written_together_are_linked(app: TestApp) {
    let record = |birth: &str| {
        json!({"resourceType": "Patient", "name": [{"family": "Kowalczyk", "given": ["Agnieszka"]}],
               "gender": "female", "birthDate": birth,
               "address": [{"line": ["14 Harbour Road"], "city": "Springfield", "postalCode": "62704"}]})
    };
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": record("1971-03-14"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": record("1971-03-17"), "request": {"method": "POST", "url": "Patient"}}]});
    let r = app.post("", &tx).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ids: Vec<String> = r.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let at = e["response"]["location"].as_str().unwrap();
            at.split('/').nth(1).unwrap().to_string()
        })
        .collect();
    app.mpi_settled().await;
    let person = |id: String| {
        let app = &app;
        async move {
            app.get_url(&format!("{}/admin/mpi/patients/{id}", app.root))
                .await
                .json()
        }
    };
    let (first, second) = (person(ids[0].clone()).await, person(ids[1].clone()).await);
    assert_eq!(first["person"], second["person"], "{first}\n{second}");
    // linked once each: the first record of the person, and the record that joined it (the
    // linker reads again the link the first one's linking gave the second, in one batch)
    let changes = |of: &Value| of["history"].as_array().unwrap().len();
    assert_eq!(changes(&first), 1, "{first}");
    assert_eq!(changes(&second), 1, "{second}");
}

crate::on_both_backends_with!(
    spawn,
    records_of_one_person_written_together_are_linked,
    golden_records_follow_their_persons,
    a_merge_links_the_records_as_its_sender_says,
);
