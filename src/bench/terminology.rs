//! The terminology benchmark (`scripts/bench-terminology`): a generated code system of
//! `--concepts` concepts, written as SNOMED CT RF2 Snapshot files (`write_release`) for
//! `emrsync terminology import snomed` to import (timed by the script); then a value set of all
//! of it and a map of 10,000 local codes to it (`setup`), and `$lookup`, `$validate-code`,
//! `$translate` and `$expand` with a text filter from concurrent clients, each with another
//! code or word every time.

use super::Target;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;

pub const SYSTEM: &str = "http://snomed.info/sct";
pub const VALUE_SET: &str = "http://emrsync.org/bench/ValueSet/all";
pub const LOCAL: &str = "http://emrsync.org/bench/CodeSystem/local";
/// Local codes the map translates.
const MAPPED: usize = 10_000;

const ORGANS: [&str; 37] = [
    "liver", "kidney", "heart", "lung", "brain", "skin", "bone", "muscle", "blood", "eye", "ear",
    "nose", "throat", "stomach", "colon", "bladder", "spleen", "pancreas", "thyroid", "adrenal",
    "prostate", "uterus", "ovary", "testis", "breast", "spine", "hip", "knee", "ankle", "wrist",
    "elbow", "shoulder", "neck", "jaw", "tooth", "tongue", "artery",
];
const KINDS: [&str; 29] = [
    "disorder",
    "injury",
    "infection",
    "neoplasm",
    "cyst",
    "inflammation",
    "failure",
    "hemorrhage",
    "fracture",
    "ulcer",
    "stenosis",
    "abscess",
    "atrophy",
    "hypertrophy",
    "necrosis",
    "fibrosis",
    "edema",
    "embolism",
    "thrombosis",
    "aneurysm",
    "dysplasia",
    "prolapse",
    "rupture",
    "spasm",
    "calculus",
    "obstruction",
    "deformity",
    "lesion",
    "pain",
];

/// Concept `i`'s code.
pub fn code(i: usize) -> String {
    (100_000 + i).to_string()
}

fn display(i: usize) -> String {
    format!("{} of {} type {i}", KINDS[(i / 37) % 29], ORGANS[i % 37])
}

/// Write the RF2 Snapshot files of `n` concepts in a ten-way tree into `dir`.
pub fn write_release(dir: &Path, n: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = |name: &str| -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
        Ok(std::io::BufWriter::new(std::fs::File::create(
            dir.join(name),
        )?))
    };
    let module = "900000000000207008";
    let mut c = file("concepts.txt")?;
    writeln!(c, "id\teffectiveTime\tactive\tmoduleId\tdefinitionStatusId")?;
    let mut d = file("descriptions.txt")?;
    writeln!(
        d,
        "id\teffectiveTime\tactive\tmoduleId\tconceptId\tlanguageCode\ttypeId\tterm\tcaseSignificanceId"
    )?;
    let mut r = file("relationships.txt")?;
    writeln!(
        r,
        "id\teffectiveTime\tactive\tmoduleId\tsourceId\tdestinationId\trelationshipGroup\ttypeId\tcharacteristicTypeId\tmodifierId"
    )?;
    for i in 0..n {
        let id = code(i);
        writeln!(c, "{id}\t20250101\t1\t{module}\t900000000000074008")?;
        writeln!(
            d,
            "{}\t20250101\t1\t{module}\t{id}\ten\t900000000000003001\t{} (disorder)\t900000000000448009",
            10 * i + 1,
            display(i)
        )?;
        if i > 0 {
            writeln!(
                r,
                "{}\t20250101\t1\t{module}\t{id}\t{}\t0\t116680003\t900000000000011006\t900000000000451002",
                10 * i + 2,
                code((i - 1) / 10)
            )?;
        }
    }
    for mut w in [c, d, r] {
        w.flush()?;
    }
    Ok(())
}

/// The value set and the map the scenarios use (PUT: a run again changes nothing); then one
/// call of each operation, timed and printed: the first loads the code system, the value
/// set's expansion and the maps into the server's caches, which the timed runs then measure.
pub async fn setup(t: &Target, concepts: usize) -> anyhow::Result<()> {
    let vs = json!({"resourceType": "ValueSet", "id": "bench-all", "url": VALUE_SET, "status": "active",
        "compose": {"include": [{"system": SYSTEM}]}});
    let element: Vec<Value> = (0..MAPPED)
        .map(|i| json!({"code": format!("L{i}"), "target": [{"code": code(i), "equivalence": "equivalent"}]}))
        .collect();
    let cm = json!({"resourceType": "ConceptMap", "id": "bench-local", "url": "http://emrsync.org/bench/ConceptMap/local",
        "status": "active", "group": [{"source": LOCAL, "target": SYSTEM, "element": element}]});
    for (path, body) in [("ValueSet/bench-all", vs), ("ConceptMap/bench-local", cm)] {
        let req = t
            .request(reqwest::Method::PUT, path)
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
        let (ok, resp) = t.send_any(req).await;
        anyhow::ensure!(ok, "PUT {path}: {resp}");
    }
    use super::Scenario::*;
    for scenario in [TermLookup, TermValidate, TermTranslate, TermExpand] {
        let path = query(scenario, concepts);
        let started = std::time::Instant::now();
        let (ok, resp) = t.send_any(t.request(reqwest::Method::GET, &path)).await;
        anyhow::ensure!(ok, "GET {path}: {resp}");
        println!(
            "first {} (cold caches): {:.0} ms",
            format!("{scenario:?}").to_lowercase(),
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

/// The request of one scenario's call, with a random code or word of `concepts`.
pub fn query(scenario: super::Scenario, concepts: usize) -> String {
    use super::Scenario::*;
    let i = fastrand::usize(..concepts.max(1));
    match scenario {
        TermLookup => format!("CodeSystem/$lookup?system={SYSTEM}&code={}", code(i)),
        TermValidate => format!(
            "ValueSet/$validate-code?url={VALUE_SET}&system={SYSTEM}&code={}",
            code(i)
        ),
        TermTranslate => format!("ConceptMap/$translate?system={LOCAL}&code=L{}", i % MAPPED),
        _ => format!(
            "ValueSet/$expand?url={VALUE_SET}&filter={}%20{}&count=10",
            KINDS[i % 29],
            &ORGANS[(i / 29) % 37][..3]
        ),
    }
}
