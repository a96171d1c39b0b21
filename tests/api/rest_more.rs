//! What outside clients reached for beyond the first REST wave (issue 28): the two other
//! patch forms, a create whose condition is in its URL, compartment search by POST,
//! `$validate`, `$meta` and its kin, and part of the CapabilityStatement.

use crate::helpers::{TestApp, matched_ids};
use crate::on_both_backends;
use serde_json::json;

on_both_backends!(
    merge_and_fhirpath_patches_apply_and_validate,
    a_create_with_a_search_in_its_url_is_conditional,
    a_compartment_is_searched_by_post,
    validate_says_what_a_write_would_and_stores_nothing,
    meta_is_read_added_to_and_taken_from,
    the_capability_statement_comes_in_part,
    a_read_comes_in_part,
    a_search_by_list_finds_its_members,
);

fn patient(mrn: &str) -> serde_json::Value {
    json!({"resourceType": "Patient", "gender": "female", "birthDate": "1974-12-25",
           "identifier": [{"system": "http://hospital.example.org/mrn", "value": mrn}],
           "name": [{"family": "Ng", "given": ["Ana"]}]})
}

async fn merge_and_fhirpath_patches_apply_and_validate(app: TestApp) {
    let (id, _) = app.create(&patient("P1")).await;
    let patch = |path: String, body: serde_json::Value, ct: &'static str| {
        app.client
            .patch(app.url(&path))
            .header("content-type", ct)
            .body(body.to_string())
    };
    let at = format!("Patient/{id}");

    // JSON Merge Patch: members set, null removes
    let merged = app
        .send(patch(
            at.clone(),
            json!({"gender": "male", "birthDate": null, "active": true}),
            "application/merge-patch+json",
        ))
        .await;
    assert_eq!(merged.status, 200, "{}", merged.text);
    let v = merged.json();
    assert_eq!(
        (
            &v["gender"],
            &v["active"],
            v.get("birthDate"),
            &v["meta"]["versionId"]
        ),
        (&json!("male"), &json!(true), None, &json!("2"))
    );
    // a partial resource as plain JSON (what fhirpy sends) is a merge patch too
    let partial = app
        .send(patch(
            at.clone(),
            json!({"name": [{"family": "Nguyen"}]}),
            "application/json",
        ))
        .await;
    assert_eq!(partial.status, 200, "{}", partial.text);
    assert_eq!(partial.json()["name"], json!([{"family": "Nguyen"}]));
    assert_eq!(partial.json()["gender"], "male", "members not named stay");

    // FHIRPath Patch: a Parameters resource of operations
    let ops = json!({"resourceType": "Parameters", "parameter": [
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": "Patient"},
            {"name": "name", "valueString": "telecom"},
            {"name": "value", "valueContactPoint": {"system": "phone", "value": "555-0100"}}]},
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.name[0].family"},
            {"name": "value", "valueString": "Nguyễn"}]},
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "Patient.active"}]}]});
    let fp = app
        .send(patch(at.clone(), ops, "application/fhir+json"))
        .await;
    assert_eq!(fp.status, 200, "{}", fp.text);
    let v = fp.json();
    assert_eq!(
        v["telecom"],
        json!([{"system": "phone", "value": "555-0100"}])
    );
    assert_eq!(v["name"][0]["family"], "Nguyễn");
    assert!(v.get("active").is_none());
    assert_eq!(v["meta"]["versionId"], "4");

    // each form is validated as a write is: a bad code is 422 at its element, nothing written
    let bad = app
        .send(patch(
            at.clone(),
            json!({"gender": "banana"}),
            "application/merge-patch+json",
        ))
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert_eq!(
        bad.first_issue(),
        ("code-invalid".into(), "Patient.gender".into())
    );
    let bad = app
        .send(patch(
            at.clone(),
            json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
                {"name": "type", "valueCode": "replace"},
                {"name": "path", "valueString": "Patient.gender"},
                {"name": "value", "valueCode": "banana"}]}]}),
            "application/fhir+json",
        ))
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    // an operation that cannot apply (the path selects two elements) is 422, a malformed one 400
    let two = app
        .send(patch(
            at.clone(),
            json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
                {"name": "type", "valueCode": "delete"},
                {"name": "path", "valueString": "Patient.name.family | Patient.identifier"}]}]}),
            "application/fhir+json",
        ))
        .await;
    assert_eq!(two.status, 422, "{}", two.text);
    let malformed = app
        .send(patch(
            at.clone(),
            json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
                {"name": "type", "valueCode": "upsert"},
                {"name": "path", "valueString": "Patient"}]}]}),
            "application/fhir+json",
        ))
        .await;
    assert_eq!(malformed.status, 400, "{}", malformed.text);
    let id_change = app
        .send(patch(
            at.clone(),
            json!({"id": "other"}),
            "application/merge-patch+json",
        ))
        .await;
    assert_eq!(id_change.status, 422, "{}", id_change.text);
    assert_eq!(
        app.get(&at).await.json()["meta"]["versionId"],
        "4",
        "refused patches change nothing"
    );

    // conditional: the search picks the resource
    let cond = app
        .send(patch(
            "Patient?identifier=http://hospital.example.org/mrn|P1".into(),
            json!({"active": false}),
            "application/merge-patch+json",
        ))
        .await;
    assert_eq!(cond.status, 200, "{}", cond.text);
    assert_eq!(cond.json()["id"], id.as_str());
    assert_eq!(cond.json()["active"], false);
}

async fn a_create_with_a_search_in_its_url_is_conditional(app: TestApp) {
    let url = "Patient?identifier=http://hospital.example.org/mrn|C1";
    let first = app.post(url, &patient("C1")).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let id = first.json()["id"].as_str().unwrap().to_string();
    // the same again finds it: 200, the existing resource, no second Patient
    let again = app.post(url, &patient("C1")).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["id"], id.as_str());
    let found = app
        .get("Patient?identifier=http://hospital.example.org/mrn|C1")
        .await;
    assert_eq!(matched_ids(&found.json()), [id.as_str()]);
    // a header and a URL that disagree are refused
    let both = app
        .post_with(
            url,
            &patient("C1"),
            (
                "If-None-Exist",
                "identifier=http://hospital.example.org/mrn|C2",
            ),
        )
        .await;
    assert_eq!(both.status, 400, "{}", both.text);
    // `_format` shapes the answer; it is no condition
    let a = app.post("Patient?_format=json", &patient("C3")).await;
    let b = app.post("Patient?_format=json", &patient("C3")).await;
    assert_eq!((a.status, b.status), (201, 201), "{}", b.text);
    assert_ne!(a.json()["id"], b.json()["id"]);
}

async fn a_compartment_is_searched_by_post(app: TestApp) {
    let (pid, _) = app.create(&patient("S1")).await;
    let (other, _) = app.create(&patient("S2")).await;
    let obs = |p: &str, code: &str| {
        json!({"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
               "subject": {"reference": format!("Patient/{p}")}})
    };
    let (heart, _) = app.create(&obs(&pid, "8867-4")).await;
    let (weight, _) = app.create(&obs(&pid, "29463-7")).await;
    app.create(&obs(&other, "8867-4")).await;
    let post = |body: &'static str| {
        app.client
            .post(app.url(&format!("Patient/{pid}/Observation/_search")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let by_code = app.send(post("code=http://loinc.org|8867-4")).await;
    assert_eq!(by_code.status, 200, "{}", by_code.text);
    assert_eq!(matched_ids(&by_code.json()), [heart.as_str()]);
    let mut all = vec![heart, weight];
    all.sort();
    let everything = app.send(post("")).await;
    assert_eq!(matched_ids(&everything.json()), all);
    // the same search by GET agrees
    let got = app
        .get(&format!(
            "Patient/{pid}/Observation?code=http://loinc.org|8867-4"
        ))
        .await;
    assert_eq!(matched_ids(&got.json()), matched_ids(&by_code.json()));
}

async fn validate_says_what_a_write_would_and_stores_nothing(app: TestApp) {
    let validate = |path: &str, body: serde_json::Value| {
        app.client
            .post(app.url(path))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
    };
    let severities = |r: &crate::helpers::Resp| -> Vec<String> {
        r.json()["issue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["severity"].as_str().unwrap().to_string())
            .collect()
    };
    // valid: 200, no error; invalid: 200 with the write's own issue at its element
    let ok = app.send(validate("Patient/$validate", patient("V1"))).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(
        !severities(&ok).contains(&"error".to_string()),
        "{}",
        ok.text
    );
    let mut wrong = patient("V2");
    wrong["gender"] = json!("banana");
    let bad = app.send(validate("Patient/$validate", wrong.clone())).await;
    assert_eq!(bad.status, 200, "{}", bad.text);
    let written = app.post("Patient", &wrong).await;
    assert_eq!(written.status, 422);
    assert_eq!(
        bad.first_issue(),
        written.first_issue(),
        "the same as a write"
    );
    // the Parameters form, mode=update on an instance whose id differs
    let (id, _) = app.create(&patient("V3")).await;
    let mut other = patient("V3");
    other["id"] = json!("not-the-same");
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": other}, {"name": "mode", "valueCode": "update"}]});
    let upd = app
        .send(validate(&format!("Patient/{id}/$validate"), params))
        .await;
    assert_eq!(upd.status, 200, "{}", upd.text);
    assert!(upd.text.contains("must carry id"), "{}", upd.text);
    // a profile this server holds: its cardinality and fixed values are checked
    let profile = json!({"resourceType": "StructureDefinition", "url": "http://example.org/fhir/StructureDefinition/mrn-patient",
        "name": "MrnPatient", "status": "active", "kind": "resource", "abstract": false, "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient", "derivation": "constraint",
        "differential": {"element": [
            {"id": "Patient.identifier", "path": "Patient.identifier", "min": 1},
            {"id": "Patient.gender", "path": "Patient.gender", "fixedCode": "female"}]}});
    app.create(&profile).await;
    let no_mrn = json!({"resourceType": "Patient", "gender": "male"});
    let checked = app
        .send(validate(
            "Patient/$validate?profile=http://example.org/fhir/StructureDefinition/mrn-patient",
            no_mrn,
        ))
        .await;
    assert_eq!(checked.status, 200, "{}", checked.text);
    let errors = checked.json()["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["severity"] == "error")
        .count();
    assert_eq!(errors, 2, "{}", checked.text);
    // a patient's token is told what its write would be: another patient's record is refused
    let (mine, _) = app.create(&patient("V5")).await;
    let token = app.token_for("patient/*.cruds", Some(&mine));
    let obs = |p: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
               "subject": {"reference": format!("Patient/{p}")}})
    };
    let own = app
        .send_as(
            &token,
            reqwest::Method::POST,
            "Observation/$validate",
            Some(&obs(&mine)),
        )
        .await;
    assert_eq!(own.status, 200, "{}", own.text);
    assert!(!own.text.contains("\"error\""), "{}", own.text);
    let other = app
        .send_as(
            &token,
            reqwest::Method::POST,
            "Observation/$validate",
            Some(&obs(&id)),
        )
        .await;
    assert_eq!(other.status, 200, "{}", other.text);
    assert_eq!(
        other.json()["issue"][0]["code"],
        "forbidden",
        "{}",
        other.text
    );
    let unknown = app
        .send(validate(
            "Patient/$validate?profile=http://example.org/none",
            patient("V4"),
        ))
        .await;
    assert!(unknown.text.contains("not known here"), "{}", unknown.text);
    // nothing was stored by any of it
    let stored = app
        .get("Patient?identifier=http://hospital.example.org/mrn|V1,http://hospital.example.org/mrn|V2")
        .await;
    assert_eq!(matched_ids(&stored.json()), Vec::<String>::new());
}

async fn meta_is_read_added_to_and_taken_from(app: TestApp) {
    let (id, _) = app.create(&patient("M1")).await;
    let op = |name: &str, meta: serde_json::Value| {
        app.client
            .post(app.url(&format!("Patient/{id}/{name}")))
            .header("content-type", "application/fhir+json")
            .body(
                json!({"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": meta}]})
                    .to_string(),
            )
    };
    let vip = json!({"system": "http://example.org/tags", "code": "vip"});
    let added = app
        .send(op("$meta-add", json!({"tag": [vip.clone()],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]})))
        .await;
    assert_eq!(added.status, 200, "{}", added.text);
    let meta = &added.json()["parameter"][0]["valueMeta"];
    assert_eq!(meta["tag"], json!([vip.clone()]));
    assert_eq!(meta["versionId"], "2", "a new version, audited and sent on");
    // a tag added twice is one tag
    let again = app
        .send(op("$meta-add", json!({"tag": [vip.clone()]})))
        .await;
    assert_eq!(
        again.json()["parameter"][0]["valueMeta"]["tag"],
        json!([vip.clone()])
    );
    let read = app.get(&format!("Patient/{id}/$meta")).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.json()["parameter"][0]["name"], "return");
    assert_eq!(
        read.json()["parameter"][0]["valueMeta"]["tag"],
        json!([vip.clone()])
    );
    // the type's and the server's tags in use, from the search index
    for path in ["Patient/$meta", "$meta"] {
        let in_use = app.get(path).await;
        assert_eq!(in_use.status, 200, "{}", in_use.text);
        let tags = &in_use.json()["parameter"][0]["valueMeta"]["tag"];
        assert!(
            tags.as_array().unwrap().contains(&vip),
            "{path}: {}",
            in_use.text
        );
    }
    let tagged = app.get("Patient?_tag=http://example.org/tags|vip").await;
    assert_eq!(matched_ids(&tagged.json()), [id.as_str()]);
    let removed = app
        .send(op("$meta-delete", json!({"tag": [vip.clone()]})))
        .await;
    assert_eq!(removed.status, 200, "{}", removed.text);
    assert!(
        removed.json()["parameter"][0]["valueMeta"]
            .get("tag")
            .is_none()
    );
    let tagged = app.get("Patient?_tag=http://example.org/tags|vip").await;
    assert_eq!(matched_ids(&tagged.json()), Vec::<String>::new());
}

async fn the_capability_statement_comes_in_part(app: TestApp) {
    let whole = app.get("metadata").await;
    // `_summary=true` keeps the elements the spec marks as summary (`rest` among them)
    let summary = app.get("metadata?_summary=true").await;
    assert_eq!(summary.status, 200, "{}", summary.text);
    let s = summary.json();
    assert_eq!(s["resourceType"], "CapabilityStatement");
    assert_eq!(s["fhirVersion"], "4.0.1");
    assert!(s["meta"]["tag"].to_string().contains("SUBSETTED"), "{s}");
    // `_summary=text` and `_elements` are what a client polling it wants: a few hundred bytes
    let text = app.get("metadata?_summary=text").await;
    assert_eq!(text.json()["status"], "active");
    assert!(text.json().get("rest").is_none());
    let elements = app.get("metadata?_elements=format,patchFormat").await;
    let e = elements.json();
    assert!(e["patchFormat"].to_string().contains("merge-patch"), "{e}");
    assert!(e.get("rest").is_none(), "{e}");
    for part in [&text, &elements] {
        assert!(
            part.text.len() * 100 < whole.text.len(),
            "{} against {}",
            part.text.len(),
            whole.text.len()
        );
    }
    let bad = app.get("metadata?_summary=count").await;
    assert_eq!(bad.status, 400);
    let ops = whole.json()["rest"][0]["operation"].to_string();
    for op in ["validate", "meta-add", "meta-delete"] {
        assert!(ops.contains(op), "{op} in {ops}");
    }
}

async fn a_read_comes_in_part(app: TestApp) {
    let mut p = patient("R1");
    p["text"] = json!({"status": "generated",
        "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Ana Ng</div>"});
    let (id, _) = app.create(&p).await;
    let whole = app.get(&format!("Patient/{id}")).await.json();
    assert!(whole.get("text").is_some() && whole["meta"].get("tag").is_none());
    let part = app.get(&format!("Patient/{id}?_elements=name")).await;
    assert_eq!(part.status, 200, "{}", part.text);
    let v = part.json();
    assert_eq!(v["name"], whole["name"]);
    assert!(
        v.get("gender").is_none() && v.get("identifier").is_none(),
        "{v}"
    );
    assert!(v["meta"]["tag"].to_string().contains("SUBSETTED"), "{v}");
    assert_eq!(part.header("etag"), Some("W/\"1\"".to_string()));
    let summary = app
        .get(&format!("Patient/{id}/_history/1?_summary=true"))
        .await
        .json();
    assert!(summary.get("text").is_none(), "{summary}");
    assert_eq!(summary["gender"], "female");
    let data = app.get(&format!("Patient/{id}?_summary=data")).await.json();
    assert!(
        data.get("text").is_none() && data.get("identifier").is_some(),
        "{data}"
    );
    assert_eq!(
        app.get(&format!("Patient/{id}?_summary=count"))
            .await
            .status,
        400
    );
}

async fn a_search_by_list_finds_its_members(app: TestApp) {
    let (p1, _) = app.create(&patient("L1")).await;
    let (p2, _) = app.create(&patient("L2")).await;
    let mut male = patient("L3");
    male["gender"] = json!("male");
    let (p3, _) = app.create(&male).await;
    let (obs, _) = app
        .create(
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                        "subject": {"reference": format!("Patient/{p1}")}}),
        )
        .await;
    let item = |r: String| json!({"item": {"reference": r}});
    let (list, _) = app
        .create(
            &json!({"resourceType": "List", "status": "current", "mode": "working",
            "entry": [item(format!("Patient/{p1}")), item(format!("Patient/{p3}")),
                      item(format!("Observation/{obs}"))]}),
        )
        .await;
    let ids = |r: crate::helpers::Resp| {
        assert_eq!(r.status, 200, "{}", r.text);
        matched_ids(&r.json())
    };
    let mut both = vec![p1.clone(), p3.clone()];
    both.sort();
    assert_eq!(ids(app.get(&format!("Patient?_list={list}")).await), both);
    assert_eq!(
        ids(app.get(&format!("Patient?_list={list}&gender=male")).await),
        [p3.as_str()]
    );
    assert_eq!(
        ids(app.get(&format!("Observation?_list={list}")).await),
        [obs.as_str()]
    );
    assert!(!ids(app.get(&format!("Patient?_list={list}")).await).contains(&p2));
    assert_eq!(
        ids(app.get("Patient?_list=no-such-list").await),
        Vec::<String>::new()
    );
    let functional = app.get("Patient?_list=$current-allergies").await;
    assert_eq!(functional.status, 400, "{}", functional.text);
}
