//! The terminology service as a client meets it: the operations answer the examples of the
//! FHIR specification's terminology pages as the pages write them (the code systems, value
//! sets and maps they use are the R4 package's, loaded at start-up as a package folder, plus
//! LOINC and SNOMED CT fragments written here); bad input gets a clear OperationOutcome; a
//! package loaded again changes nothing.

use crate::helpers::{Backend, TestApp, examples_package, spawn_with};
use serde_json::{Value, json};
use std::io::Read;
use std::path::Path;

/// The R4 package's files the examples use.
const SPEC_FILES: &[&str] = &[
    "CodeSystem-administrative-gender.json",
    "ValueSet-administrative-gender.json",
    "CodeSystem-composition-status.json",
    "ValueSet-composition-status.json",
    "ConceptMap-cm-composition-status-v3.json",
    "ValueSet-v3-ActStatus.json",
    "CodeSystem-v3-ActStatus.json",
];

/// A folder with `SPEC_FILES` taken from the examples package, and the fragments of LOINC
/// and SNOMED CT the specification's examples ask about.
fn package_folder(dir: &Path) {
    let file = std::fs::File::open(examples_package()).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found = 0;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().to_string();
        let name = path.trim_start_matches("package/");
        if SPEC_FILES.contains(&name) {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            std::fs::write(dir.join(name), text).unwrap();
            found += 1;
        }
    }
    assert_eq!(found, SPEC_FILES.len());
    let loinc = json!({"resourceType": "CodeSystem", "id": "loinc-fragment", "url": "http://loinc.org",
        "version": "2.48", "name": "LOINC", "status": "active", "content": "fragment",
        "concept": [{"code": "1963-8", "display": "Bicarbonate [Moles/volume] in Serum",
                     "designation": [{"language": "en", "use": {"system": "http://loinc.org", "code": "LONG_COMMON_NAME"},
                                      "value": "Bicarbonate [Moles/volume] in Serum or Plasma"}]}]});
    let snomed = json!({"resourceType": "CodeSystem", "id": "snomed-fragment", "url": "http://snomed.info/sct",
        "name": "SNOMED_CT", "status": "active", "content": "fragment", "hierarchyMeaning": "is-a",
        "concept": [{"code": "235856003", "display": "Disorder of liver", "concept": [
            {"code": "3738000", "display": "Viral hepatitis", "concept": [
                {"code": "66071002", "display": "Viral hepatitis type B"}]}]},
            {"code": "73211009", "display": "Diabetes mellitus",
             "designation": [{"language": "de", "value": "Zuckerkrankheit"}]}]});
    std::fs::write(dir.join("loinc.json"), loinc.to_string()).unwrap();
    std::fs::write(dir.join("snomed.json"), snomed.to_string()).unwrap();
}

async fn spawn(backend: Backend) -> TestApp {
    let folder = tempfile::tempdir().unwrap().keep();
    package_folder(&folder);
    spawn_with(backend, move |s| s.terminology_packages = vec![folder]).await
}

/// The value of the output parameter `name`.
fn out<'a>(params: &'a Value, name: &str) -> &'a Value {
    let p = params["parameter"]
        .as_array()
        .unwrap_or_else(|| panic!("not Parameters: {params}"))
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {params}"));
    p.as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("value") || *k == "part")
        .map(|(_, v)| v)
        .unwrap()
}

fn codes(expanded: &Value) -> Vec<&str> {
    expanded["expansion"]["contains"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["code"].as_str().unwrap())
        .collect()
}

async fn the_specifications_examples_answer_as_written(app: TestApp) {
    // $lookup (CodeSystem/$lookup, example 1)
    let r = app
        .get("CodeSystem/$lookup?system=http://loinc.org&code=1963-8")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let p = r.json();
    assert_eq!(out(&p, "name"), "LOINC");
    assert_eq!(out(&p, "version"), "2.48");
    assert_eq!(out(&p, "display"), "Bicarbonate [Moles/volume] in Serum");
    let designation = out(&p, "designation");
    assert!(
        designation.to_string().contains("Serum or Plasma"),
        "{designation}"
    );
    // a display in the language asked for, where a designation has it (a regional variant
    // falls back to its language), else the code system's own
    let lookup = |lang: &str| {
        format!(
            "CodeSystem/$lookup?system=http://snomed.info/sct&code=73211009&displayLanguage={lang}"
        )
    };
    let r = app.get(&lookup("de-CH")).await;
    assert_eq!(out(&r.json(), "display"), "Zuckerkrankheit", "{}", r.text);
    let r = app.get(&lookup("fr")).await;
    assert_eq!(out(&r.json(), "display"), "Diabetes mellitus", "{}", r.text);
    // $validate-code (ValueSet/$validate-code, example: a wrong display)
    let r = app.get("ValueSet/$validate-code?url=http://hl7.org/fhir/ValueSet/administrative-gender&system=http://hl7.org/fhir/administrative-gender&code=male&display=test").await;
    let p = r.json();
    assert_eq!(out(&p, "result"), false);
    assert!(
        out(&p, "message")
            .as_str()
            .unwrap()
            .contains("\"test\" is incorrect"),
        "{p}"
    );
    assert_eq!(out(&p, "display"), "Male");
    // $subsumes (CodeSystem/$subsumes, example)
    let r = app
        .get("CodeSystem/$subsumes?system=http://snomed.info/sct&codeA=235856003&codeB=3738000")
        .await;
    assert_eq!(out(&r.json(), "outcome"), "subsumes", "{}", r.text);
    // $translate (ConceptMap/$translate, example)
    let r = app.get("ConceptMap/$translate?system=http://hl7.org/fhir/composition-status&code=preliminary&source=http://hl7.org/fhir/ValueSet/composition-status&target=http://terminology.hl7.org/ValueSet/v3-ActStatus").await;
    let p = r.json();
    assert_eq!(out(&p, "result"), true, "{p}");
    let m = out(&p, "match").to_string();
    assert!(
        m.contains("\"equivalent\"") && m.contains("\"active\"") && m.contains("v3-ActStatus"),
        "{m}"
    );
    // $expand: the value set's codes in the code system's order
    let r = app
        .get("ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/administrative-gender")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let vs = r.json();
    assert_eq!(vs["expansion"]["total"], 4);
    assert_eq!(codes(&vs), ["male", "female", "other", "unknown"]);
    assert_eq!(vs["expansion"]["contains"][0]["display"], "Male");
    // the same at the instance level, filtered by text (a word's start) and paged
    let r = app
        .get("ValueSet/administrative-gender/$expand?filter=fem")
        .await;
    assert_eq!(codes(&r.json()), ["female"], "{}", r.text);
    let r = app
        .get("ValueSet/administrative-gender/$expand?count=2&offset=1")
        .await;
    let vs = r.json();
    assert_eq!(
        (codes(&vs), vs["expansion"]["total"].clone()),
        (vec!["female", "other"], json!(4))
    );
}

async fn operations_take_parameters_by_post_and_at_the_instance(app: TestApp) {
    let asked = json!({"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": "http://hl7.org/fhir/ValueSet/administrative-gender"},
        {"name": "coding", "valueCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": "female", "display": "Female"}}]});
    let r = app.post("ValueSet/$validate-code", &asked).await;
    assert_eq!(
        (r.status, out(&r.json(), "result").clone()),
        (200, json!(true)),
        "{}",
        r.text
    );
    // a code the value set does not hold, in a CodeableConcept
    let asked = json!({"resourceType": "Parameters", "parameter": [
        {"name": "codeableConcept", "valueCodeableConcept": {"coding": [
            {"system": "http://hl7.org/fhir/composition-status", "code": "final"}]}}]});
    let r = app
        .post("ValueSet/administrative-gender/$validate-code", &asked)
        .await;
    let p = r.json();
    assert_eq!(out(&p, "result"), false);
    assert!(
        out(&p, "message")
            .as_str()
            .unwrap()
            .contains("not in the value set"),
        "{p}"
    );
    // the code system's own $validate-code, and the concept's parents through $lookup
    let r = app
        .get("CodeSystem/$validate-code?url=http://snomed.info/sct&code=66071002")
        .await;
    assert_eq!(out(&r.json(), "result"), true, "{}", r.text);
    let r = app
        .get("CodeSystem/$lookup?system=http://snomed.info/sct&code=3738000&property=parent&property=child")
        .await;
    let props = r.json()["parameter"].to_string();
    assert!(
        props.contains("235856003") && props.contains("66071002"),
        "{props}"
    );
    // reverse translation reads the map back
    let r = app.get("ConceptMap/$translate?url=http://hl7.org/fhir/ConceptMap/cm-composition-status-v3&system=http://terminology.hl7.org/CodeSystem/v3-ActStatus&code=active&reverse=true").await;
    let m = out(&r.json(), "match").to_string();
    assert!(m.contains("preliminary"), "{m}");
    // a value set by filter over a hierarchy (is-a), written by a client
    let vs = json!({"resourceType": "ValueSet", "url": "http://example.org/vs/liver", "status": "active",
        "compose": {"include": [{"system": "http://snomed.info/sct",
            "filter": [{"property": "concept", "op": "is-a", "value": "3738000"}]}]}});
    app.create(&vs).await;
    let r = app
        .get("ValueSet/$expand?url=http://example.org/vs/liver")
        .await;
    assert_eq!(codes(&r.json()), ["3738000", "66071002"], "{}", r.text);
    let r = app.get("ValueSet/$validate-code?url=http://example.org/vs/liver&system=http://snomed.info/sct&code=73211009").await;
    assert_eq!(out(&r.json(), "result"), false);
}

async fn bad_input_gets_a_clear_outcome(app: TestApp) {
    let r = app
        .get("CodeSystem/$lookup?system=http://nowhere.example&code=x")
        .await;
    assert_eq!(r.status, 404);
    assert!(r.text.contains("http://nowhere.example"), "{}", r.text);
    let r = app
        .get("CodeSystem/$lookup?system=http://loinc.org&code=0000-0")
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = app.get("CodeSystem/$lookup?code=x").await;
    assert_eq!(r.status, 400);
    let r = app
        .get("ValueSet/$expand?url=http://nowhere.example/vs")
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .get("ValueSet/administrative-gender/$expand?count=many")
        .await;
    assert_eq!(r.status, 400);
    let r = app
        .get("ConceptMap/$translate?url=http://nowhere.example/cm&system=s&code=c")
        .await;
    assert_eq!(r.status, 404);
    // value sets that include each other: refused, not a hang
    for (id, other) in [("a", "b"), ("b", "a")] {
        let vs = json!({"resourceType": "ValueSet", "id": id, "url": format!("http://example.org/vs/{id}"),
            "status": "active", "compose": {"include": [{"valueSet": [format!("http://example.org/vs/{other}")]}]}});
        assert!(app.put(&format!("ValueSet/{id}"), &vs).await.status < 300);
    }
    let r = app.get("ValueSet/a/$expand").await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("cycle"), "{}", r.text);
    // a second CodeSystem with a url and version another has
    let twin = json!({"resourceType": "CodeSystem", "url": "http://loinc.org", "version": "2.48",
        "status": "active", "content": "fragment", "concept": [{"code": "x"}]});
    let r = app.post("CodeSystem", &twin).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("CodeSystem/loinc-fragment"), "{}", r.text);
    // an expansion larger than one answer holds: the count, and the way to page it
    let concept: Vec<Value> = (0..10_001)
        .map(|i| json!({"code": format!("c{i}")}))
        .collect();
    let big = json!({"resourceType": "CodeSystem", "url": "http://example.org/cs/big", "status": "active",
        "content": "complete", "concept": concept});
    app.create(&big).await;
    let vs = json!({"resourceType": "ValueSet", "url": "http://example.org/vs/big", "status": "active",
        "compose": {"include": [{"system": "http://example.org/cs/big"}]}});
    app.create(&vs).await;
    let r = app
        .get("ValueSet/$expand?url=http://example.org/vs/big")
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.text.contains("10001") && r.text.contains("count"),
        "{}",
        r.text
    );
    let r = app
        .get("ValueSet/$expand?url=http://example.org/vs/big&count=3&offset=10000")
        .await;
    let vs = r.json();
    assert_eq!(
        (vs["expansion"]["total"].clone(), codes(&vs)),
        (json!(10_001), vec!["c10000"])
    );
}

async fn a_change_is_seen_at_once_and_a_package_loads_once(app: TestApp) {
    // warm the caches, then change the code system: the next answer is the new one
    let r = app
        .get("ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/administrative-gender")
        .await;
    assert_eq!(r.json()["expansion"]["total"], 4);
    let mut cs = app.get("CodeSystem/administrative-gender").await.json();
    cs["concept"]
        .as_array_mut()
        .unwrap()
        .push(json!({"code": "x-test", "display": "Test"}));
    assert_eq!(
        app.put("CodeSystem/administrative-gender", &cs)
            .await
            .status,
        200
    );
    let r = app
        .get("ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/administrative-gender")
        .await;
    assert_eq!(r.json()["expansion"]["total"], 5, "{}", r.text);
    // deleted: no longer known
    assert!(
        app.delete("ConceptMap/cm-composition-status-v3")
            .await
            .status
            < 300
    );
    let r = app.get("ConceptMap/$translate?url=http://hl7.org/fhir/ConceptMap/cm-composition-status-v3&system=http://hl7.org/fhir/composition-status&code=final").await;
    assert_eq!(r.status, 404, "{}", r.text);
    // the folder loaded again by the CLI: nothing written twice
    let folder = tempfile::tempdir().unwrap();
    package_folder(folder.path());
    let mut args = vec!["terminology".to_string(), "load".to_string()];
    args.extend(crate::cli::store_flags(&app));
    args.push(folder.path().display().to_string());
    for _ in 0..2 {
        let (ok, stdout, stderr) = crate::cli::emrsync_owned(&args);
        assert!(ok, "{stdout}{stderr}");
    }
    let history = app
        .get("ValueSet/administrative-gender/_history")
        .await
        .json();
    assert_eq!(history["total"], 1, "{history}");
    let found = app.get("CodeSystem?url=http://loinc.org").await.json();
    assert_eq!(found["total"], 1, "{found}");
}

/// The ids a search finds, sorted.
async fn found(app: &TestApp, query: &str) -> Vec<String> {
    let r = app.get(query).await;
    assert_eq!(r.status, 200, "{query}: {}", r.text);
    crate::helpers::matched_ids(&r.json())
}

async fn searches_draw_their_codes_from_terminology(app: TestApp) {
    let (patient, _) = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Codes"}]}))
        .await;
    let mut ids = std::collections::HashMap::new();
    for code in ["3738000", "66071002", "73211009"] {
        let condition = json!({"resourceType": "Condition",
            "subject": {"reference": format!("Patient/{patient}")},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]}});
        ids.insert(code, app.create(&condition).await.0);
    }
    let of =
        |codes: &[&str]| crate::helpers::sorted(codes.iter().map(|c| ids[c].clone()).collect());
    assert_eq!(
        found(
            &app,
            "Condition?code:below=http://snomed.info/sct|235856003"
        )
        .await,
        of(&["3738000", "66071002"])
    );
    assert_eq!(
        found(&app, "Condition?code:above=http://snomed.info/sct|66071002").await,
        of(&["3738000", "66071002"])
    );
    let vs = json!({"resourceType": "ValueSet", "url": "http://example.org/vs/hepatitis", "status": "active",
        "compose": {"include": [{"system": "http://snomed.info/sct",
            "filter": [{"property": "concept", "op": "descendent-of", "value": "3738000"}]}]}});
    app.create(&vs).await;
    assert_eq!(
        found(&app, "Condition?code:in=http://example.org/vs/hepatitis").await,
        of(&["66071002"])
    );
    assert_eq!(
        found(
            &app,
            "Condition?code:not-in=http://example.org/vs/hepatitis"
        )
        .await,
        of(&["3738000", "73211009"])
    );
    // a value set or a code the server does not know: the search is refused, and says why
    let r = app.get("Condition?code:in=http://nowhere.example/vs").await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = app
        .get("Condition?code:below=http://snomed.info/sct|1")
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = app.get("Condition?code:below=235856003").await;
    assert_eq!(r.status, 400, "{}", r.text);
}

crate::on_both_backends_with!(
    spawn,
    searches_draw_their_codes_from_terminology,
    the_specifications_examples_answer_as_written,
    operations_take_parameters_by_post_and_at_the_instance,
    bad_input_gets_a_clear_outcome,
    a_change_is_seen_at_once_and_a_package_loads_once,
);
