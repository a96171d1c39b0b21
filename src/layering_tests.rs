//! The module graph, checked: each part imports only the parts below it, so that the store
//! stays the floor and the ingest path the one way in. A `use crate::x` (or `crate::x::...`
//! anywhere in the text, tests included) that climbs a layer fails here, naming the file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What each part may import besides itself.
const ALLOWED: &[(&str, &[&str])] = &[
    ("fhir", &[]),
    ("store", &["fhir"]),
    ("auth", &["fhir", "store"]),
    ("subscriptions", &["fhir", "store", "auth"]),
    ("bulk", &["fhir", "store", "auth"]),
    ("ingest", &["fhir", "store", "auth", "subscriptions"]),
    (
        "identity",
        &["fhir", "store", "auth", "subscriptions", "ingest"],
    ),
    // the stream names each change's enterprise patient (the MPI's golden record)
    ("stream", &["fhir", "store", "identity"]),
    (
        "terminology",
        &["fhir", "store", "auth", "subscriptions", "ingest"],
    ),
    (
        "adapters",
        &["fhir", "store", "auth", "subscriptions", "ingest", "tls"],
    ),
    (
        "routing",
        &[
            "fhir",
            "store",
            "auth",
            "subscriptions",
            "ingest",
            "identity",
            "terminology",
            "adapters",
            "tls",
        ],
    ),
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level parts `text` imports: `crate::x` and each name of `crate::{x, y::z}`.
fn imported(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
            None => vec![rest],
        };
        for name in names {
            let part: String = name
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !part.is_empty() {
                out.insert(part);
            }
        }
    }
    out
}

#[test]
fn the_import_scanner_sees_plain_and_grouped_paths() {
    let text = "use crate::store::Tx;\nuse crate::{api::x, auth};\nlet y = crate::fhir::f();";
    let found: Vec<String> = imported(text).into_iter().collect();
    assert_eq!(found, ["api", "auth", "fhir", "store"]);
}

#[test]
fn no_part_imports_a_part_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut climbing = Vec::new();
    for (part, allowed) in ALLOWED {
        let mut list = Vec::new();
        files(&src.join(part), &mut list);
        assert!(!list.is_empty(), "src/{part} has no files");
        for file in list {
            let text = std::fs::read_to_string(&file).unwrap();
            for used in imported(&text) {
                if used != *part && !allowed.contains(&used.as_str()) {
                    let shown = file.strip_prefix(&src).unwrap().display().to_string();
                    climbing.push(format!("src/{shown} imports crate::{used}"));
                }
            }
        }
    }
    assert!(
        climbing.is_empty(),
        "imports that climb a layer:\n{}",
        climbing.join("\n")
    );
}
