//! The big code systems as a licence holder loads them: small files in the shapes of LOINC's
//! CSV, SNOMED CT's RF2 and RxNorm's RRF, written here, imported with `emrsync terminology
//! import`, then asked about over the FHIR API: `$lookup`, and value sets with an `is-a`
//! filter over each system's hierarchy. A version imported again replaces what it held.

use crate::cli::{emrsync_owned, store_flags};
use crate::helpers::{Backend, TestApp, spawn_with};
use serde_json::{Value, json};
use std::path::Path;

async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |s| s.terminology_ttl_secs = 1).await
}

fn import(app: &TestApp, args: &[&str]) -> String {
    let mut all: Vec<String> = ["terminology", "import"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    all.push(args[0].to_string());
    all.extend(store_flags(app));
    all.extend(args[1..].iter().map(|s| s.to_string()));
    let (ok, out, err) = emrsync_owned(&all);
    assert!(ok, "{out}{err}");
    out
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn expand_is_a(app: &TestApp, system: &str, code: &str) -> Vec<String> {
    let vs = json!({"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource":
        {"resourceType": "ValueSet", "status": "active", "compose": {"include": [
            {"system": system, "filter": [{"property": "concept", "op": "is-a", "value": code}]}]}}}]});
    let r = app.post("ValueSet/$expand", &vs).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut codes: Vec<String> = r.json()["expansion"]["contains"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["code"].as_str().unwrap().to_string())
        .collect();
    codes.sort();
    codes
}

fn display(params: &Value) -> &str {
    params["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "display")
        .unwrap()["valueString"]
        .as_str()
        .unwrap()
}

const LOINC_HEADER: &str = "\"LOINC_NUM\",\"COMPONENT\",\"PROPERTY\",\"TIME_ASPCT\",\"SYSTEM\",\"SCALE_TYP\",\"METHOD_TYP\",\"CLASS\",\"CLASSTYPE\",\"STATUS\",\"LONG_COMMON_NAME\",\"SHORTNAME\",\"DefinitionDescription\"\n";

async fn loinc_snomed_and_rxnorm_import_and_answer(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // LOINC: three terms (one deprecated), and a hierarchy of parts above them
    let terms = [
        "\"2345-7\",\"Glucose\",\"MCnc\",\"Pt\",\"Ser/Plas\",\"Qn\",\"\",\"CHEM\",\"1\",\"ACTIVE\",\"Glucose [Mass/volume] in Serum or Plasma\",\"Glucose SerPl-mCnc\",\"\"",
        "\"2339-0\",\"Glucose\",\"MCnc\",\"Pt\",\"Bld\",\"Qn\",\"\",\"CHEM\",\"1\",\"ACTIVE\",\"Glucose [Mass/volume] in Blood\",\"Glucose Bld-mCnc\",\"\"",
        "\"2823-3\",\"Potassium\",\"SCnc\",\"Pt\",\"Ser/Plas\",\"Qn\",\"\",\"CHEM\",\"1\",\"ACTIVE\",\"Potassium [Moles/volume] in Serum or Plasma\",\"Potassium SerPl-sCnc\",\"\"",
        "\"9999-1\",\"Old\",\"MCnc\",\"Pt\",\"Bld\",\"Qn\",\"\",\"CHEM\",\"1\",\"DEPRECATED\",\"An old test\",\"Old\",\"\"",
    ];
    let table = write(
        d,
        "Loinc.csv",
        &format!("{LOINC_HEADER}{}\n", terms.join("\n")),
    );
    let hierarchy = write(
        d,
        "ComponentHierarchyBySystem.csv",
        "\"PATH_TO_ROOT\",\"SEQUENCE\",\"IMMEDIATE_PARENT\",\"CODE\",\"CODE_TEXT\"\n\
         \"\",\"1\",\"\",\"LP7786-9\",\"Chemistry\"\n\
         \"LP7786-9\",\"1\",\"LP7786-9\",\"LP14635-4\",\"Glucose\"\n\
         \"LP7786-9.LP14635-4\",\"1\",\"LP14635-4\",\"2345-7\",\"Glucose SerPl-mCnc\"\n\
         \"LP7786-9.LP14635-4\",\"2\",\"LP14635-4\",\"2339-0\",\"Glucose Bld-mCnc\"\n\
         \"LP7786-9\",\"2\",\"LP7786-9\",\"2823-3\",\"Potassium SerPl-sCnc\"\n",
    );
    let out = import(
        &app,
        &[
            "loinc",
            "--table",
            &table,
            "--hierarchy",
            &hierarchy,
            "--version",
            "2.78",
        ],
    );
    assert!(out.contains("6 concepts"), "{out}");
    assert_eq!(
        expand_is_a(&app, "http://loinc.org", "LP14635-4").await,
        ["2339-0", "2345-7", "LP14635-4"]
    );
    let r = app
        .get("CodeSystem/$lookup?system=http://loinc.org&code=2345-7&property=CLASS")
        .await;
    assert_eq!(
        display(&r.json()),
        "Glucose [Mass/volume] in Serum or Plasma",
        "{}",
        r.text
    );
    assert!(
        r.text.contains("CHEM") && r.text.contains("Glucose SerPl-mCnc"),
        "{}",
        r.text
    );
    let r = app
        .get("CodeSystem/$validate-code?url=http://loinc.org&code=9999-1")
        .await;
    assert!(r.text.contains("inactive"), "{}", r.text);

    // SNOMED CT: a branch of clinical findings, with preferred terms from a language refset
    let concepts = write(
        d,
        "sct2_Concept_Snapshot_INT.txt",
        "id\teffectiveTime\tactive\tmoduleId\tdefinitionStatusId\n\
        404684003\t20020131\t1\t900000000000207008\t900000000000074008\n\
        235856003\t20020131\t1\t900000000000207008\t900000000000074008\n\
        3738000\t20020131\t1\t900000000000207008\t900000000000074008\n\
        66071002\t20240101\t1\t900000000000207008\t900000000000074008\n\
        73211009\t20020131\t1\t900000000000207008\t900000000000074008\n\
        10000006\t20020131\t0\t900000000000207008\t900000000000074008\n",
    );
    let description = |id: &str, concept: &str, kind: &str, term: &str| {
        format!(
            "{id}\t20020131\t1\t900000000000207008\t{concept}\ten\t{kind}\t{term}\t900000000000448009\n"
        )
    };
    let (fsn, syn) = ("900000000000003001", "900000000000013009");
    let descriptions = write(
        d,
        "sct2_Description_Snapshot-en_INT.txt",
        &format!(
            "id\teffectiveTime\tactive\tmoduleId\tconceptId\tlanguageCode\ttypeId\tterm\tcaseSignificanceId\n{}{}{}{}{}{}{}",
            description("1", "404684003", fsn, "Clinical finding (finding)"),
            description("2", "235856003", fsn, "Disorder of liver (disorder)"),
            description("3", "235856003", syn, "Liver disorder"),
            description("4", "3738000", fsn, "Viral hepatitis (disorder)"),
            description("5", "3738000", syn, "Viral hepatitis"),
            description("6", "66071002", fsn, "Viral hepatitis type B (disorder)"),
            description("7", "73211009", fsn, "Diabetes mellitus (disorder)")
        ),
    );
    let is_a = |id: &str, child: &str, parent: &str| {
        format!(
            "{id}\t20020131\t1\t900000000000207008\t{child}\t{parent}\t0\t116680003\t900000000000011006\t900000000000451002\n"
        )
    };
    let relationships = write(
        d,
        "sct2_Relationship_Snapshot_INT.txt",
        &format!(
            "id\teffectiveTime\tactive\tmoduleId\tsourceId\tdestinationId\trelationshipGroup\ttypeId\tcharacteristicTypeId\tmodifierId\n{}{}{}{}",
            is_a("11", "235856003", "404684003"),
            is_a("12", "3738000", "235856003"),
            is_a("13", "66071002", "3738000"),
            is_a("14", "73211009", "404684003")
        ),
    );
    let language = write(
        d,
        "der2_cRefset_LanguageSnapshot-en_INT.txt",
        "id\teffectiveTime\tactive\tmoduleId\trefsetId\treferencedComponentId\tacceptabilityId\n\
         a1\t20020131\t1\t900000000000207008\t900000000000509007\t3\t900000000000548007\n\
         a2\t20020131\t1\t900000000000207008\t900000000000509007\t5\t900000000000548007\n",
    );
    let out = import(
        &app,
        &[
            "snomed",
            "--concepts",
            &concepts,
            "--descriptions",
            &descriptions,
            "--relationships",
            &relationships,
            "--language",
            &language,
        ],
    );
    assert!(out.contains("version/20240101"), "{out}");
    assert_eq!(
        expand_is_a(&app, "http://snomed.info/sct", "235856003").await,
        ["235856003", "3738000", "66071002"]
    );
    let r = app
        .get("CodeSystem/$lookup?system=http://snomed.info/sct&code=3738000")
        .await;
    assert_eq!(display(&r.json()), "Viral hepatitis", "{}", r.text);
    let r = app
        .get("CodeSystem/$subsumes?system=http://snomed.info/sct&codeA=404684003&codeB=66071002")
        .await;
    assert!(r.text.contains("\"subsumes\""), "{}", r.text);

    // RxNorm: an ingredient, a clinical drug and a branded one
    let atom = |cui: &str, aui: &str, tty: &str, text: &str| {
        format!("{cui}|ENG||||||{aui}||||RXNORM|{tty}|{cui}|{text}||N|4096|\n")
    };
    let conso = write(
        d,
        "RXNCONSO.RRF",
        &format!(
            "{}{}{}{}",
            atom("161", "A1", "IN", "acetaminophen"),
            atom("198440", "A2", "SCD", "acetaminophen 500 MG Oral Tablet"),
            atom("198440", "A3", "SY", "APAP 500 MG Oral Tablet"),
            atom(
                "209387",
                "A4",
                "SBD",
                "acetaminophen 500 MG Oral Tablet [Tylenol]"
            )
        ),
    );
    let rel = write(
        d,
        "RXNREL.RRF",
        "161|||RO|198440|||has_ingredient|R1||RXNORM||||N||\n\
         198440|||RB|209387|||isa|R2||RXNORM||||N||\n",
    );
    let out = import(
        &app,
        &[
            "rxnorm",
            "--conso",
            &conso,
            "--rel",
            &rel,
            "--version",
            "2025-01-06",
        ],
    );
    assert!(out.contains("3 concepts"), "{out}");
    let rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm";
    assert_eq!(
        expand_is_a(&app, rxnorm, "198440").await,
        ["198440", "209387"]
    );
    let r = app
        .get(&format!(
            "CodeSystem/$lookup?system={rxnorm}&code=198440&property=has_ingredient"
        ))
        .await;
    assert_eq!(display(&r.json()), "acetaminophen 500 MG Oral Tablet");
    assert!(r.text.contains("\"161\""), "{}", r.text);

    // LOINC again, one term more: the same CodeSystem, its concepts replaced
    let more = format!(
        "{LOINC_HEADER}{}\n\"2951-2\",\"Sodium\",\"SCnc\",\"Pt\",\"Ser/Plas\",\"Qn\",\"\",\"CHEM\",\"1\",\"ACTIVE\",\"Sodium [Moles/volume] in Serum or Plasma\",\"Sodium SerPl-sCnc\",\"\"\n",
        terms.join("\n")
    );
    let table = write(d, "Loinc.csv", &more);
    let out = import(
        &app,
        &[
            "loinc",
            "--table",
            &table,
            "--hierarchy",
            &hierarchy,
            "--version",
            "2.78",
        ],
    );
    assert!(out.contains("7 concepts"), "{out}");
    let found = app.get("CodeSystem?url=http://loinc.org").await.json();
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["entry"][0]["resource"]["count"], 7);
    assert_eq!(found["entry"][0]["resource"]["content"], "not-present");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = app
        .get("CodeSystem/$lookup?system=http://loinc.org&code=2951-2")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn a_release_that_does_not_parse_is_refused_with_where(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let concepts = write(dir.path(), "c.txt", "id\teffectiveTime\tactive\n1\t2\n");
    let mut args: Vec<String> = ["terminology", "import", "snomed"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(store_flags(&app));
    for f in ["--concepts", "--descriptions", "--relationships"] {
        args.push(f.into());
        args.push(concepts.clone());
    }
    let (ok, out, err) = emrsync_owned(&args);
    assert!(!ok, "{out}");
    assert!(err.contains("c.txt: line 2 has 2 fields"), "{err}");
}

crate::on_both_backends_with!(
    spawn,
    loinc_snomed_and_rxnorm_import_and_answer,
    a_release_that_does_not_parse_is_refused_with_where,
);
