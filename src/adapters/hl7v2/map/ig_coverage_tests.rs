//! How much of the v2-to-FHIR IG's segment tables the maps carry over, measured, not claimed.
//!
//! For each IG table (`PID[Patient]`: PID's fields to the Patient's elements) that
//! `capability/hl7v2/ig-coverage.json` claims, the test takes a message written for it
//! (`tests/corpus/v2-to-fhir-ig/messages/`), values every field of the segment that the IG maps
//! (a value of the field's datatype; a coded field gets the first code of the IG's code system
//! table for it), and maps the message. Then, field by field, it maps the message again
//! without that field: the field is *mapped* when the elements the IG names for it (`gender`,
//! the extension with the IG's url, ...) differ between the two, or when the message cannot
//! be mapped without it and those elements are there. A field is *omitted* when the ledger
//! gives the reason, and *missed* otherwise.
//!
//! The test fails when a table maps fewer fields than the ledger's floor, when the ledger
//! calls a field omitted that is mapped after all, when an IG table is neither claimed nor
//! set aside with a reason, and when `docs/hl7v2-ig-coverage.md` is not the report of today's
//! maps (`EMRSYNC_UPDATE_DOCS=1 cargo test ig_coverage` writes it).

use super::ig_tables::{Field, Key, fields, read_rows};
use super::map;
use crate::adapters::hl7v2::message;
use crate::adapters::hl7v2::zone::Zone;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Ledger {
    tables: Vec<Claim>,
    not_claimed: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Claim {
    /// `PID[Patient]`, as the IG names its table.
    table: String,
    /// The message (in `tests/corpus/v2-to-fhir-ig/messages/`) whose first such segment is
    /// measured.
    message: String,
    /// Fields mapped when the ledger was last brought up to date: the floor.
    min_mapped: usize,
    #[serde(default)]
    omitted: BTreeMap<String, String>,
    /// Slips of the IG's table, mended before measuring: an attribute's start as the IG writes
    /// it (`occurrenceTIming`) -> as FHIR names it.
    #[serde(default)]
    errata: BTreeMap<String, String>,
}

enum Verdict {
    Mapped,
    Omitted(String),
    Missed,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first code of the IG's code system table `name`: (v2 code, text, v2 table).
fn first_code(name: &str) -> Option<(String, String, String)> {
    let file = root().join(format!(
        "capability/hl7v2/v2-to-fhir/codesystems/HL7 Concept Map_ {} - Sheet1.csv",
        name.replace('/', "")
    ));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(file)
        .ok()?;
    reader.records().skip(2).find_map(|r| {
        let r = r.ok()?;
        let code = r.get(0)?.trim();
        (!code.is_empty() && !code.contains(' ')).then(|| {
            (
                code.to_string(),
                r.get(1).unwrap_or("").trim().to_string(),
                r.get(2).unwrap_or("").trim().to_string(),
            )
        })
    })
}

/// A value of `field`'s datatype, distinct per field number; `None` where only the message
/// written for the table can say (`varies`).
fn sample(field: &Field) -> Option<String> {
    let n = field.number;
    if let Some((code, text, table)) = first_code(&field.vocabulary) {
        return Some(match field.datatype.as_str() {
            "ID" | "IS" => code,
            _ => format!("{code}^{text}^{table}"),
        });
    }
    Some(match field.datatype.split(' ').next().unwrap_or("") {
        "SI" | "NM" => format!("{}", n % 7 + 1),
        "DT" => "20260102".into(),
        "DTM" | "TS" => format!("202601020304{:02}", n % 60),
        "CWE" | "CE" | "CNE" => format!("IGC{n}^Local concept {n}^L"),
        "ID" | "IS" => format!("X{n}"),
        "CX" => format!("IGC-ID-{n}^^^IGCAUTH{n}^MR"),
        "XPN" => format!("Family{n}^Given{n}^Middle{n}^Jr^Dr^^L"),
        "XAD" => format!("{n} Main St^Unit {n}^Springfield^IL^62701^USA^H"),
        "XTN" => format!("^PRN^PH^^1^217^55501{n:02}"),
        "XCN" => format!(
            "IGC-PR-{n}^Doe{n}^John^Q^Jr^Dr^^^NPI&2.16.840.1.113883.4.6&ISO^L^^^NPI^^^^^^^^MD"
        ),
        "XON" => format!("Org {n}^^^^^IGCAUTH&1.2.3.{n}&ISO^XX^^^IGC-ORG-{n}"),
        "EI" | "EIP" => format!("IGC-EI-{n}^APP{n}"),
        "HD" => format!("APP{n}^1.2.3.{n}^ISO"),
        "PL" => format!("WARD{n}^R{n}^B{n}^GOOD HEALTH"),
        // a quantity of time where the field is one (durations, offsets), else of volume
        "CQ" if ["duration", "time"]
            .iter()
            .any(|w| field.name.to_lowercase().contains(w)) =>
        {
            "30^min&minute&UCUM".into()
        }
        "CQ" => "5^mL&mL&UCUM".into(),
        "TM" => "0830".into(),
        "DR" => "20260101^20260102".into(),
        "CP" => "10.50&USD".into(),
        "DLN" => format!("D{n}^IL^20300101"),
        "TQ" => "1^Q6H^^20260102".into(),
        "varies" | "" => return None,
        _ => format!("Text {n}"),
    })
}

fn segments_of(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

fn text_of(segments: &[Vec<String>]) -> String {
    segments
        .iter()
        .map(|s| s.join("|"))
        .collect::<Vec<_>>()
        .join("\r")
}

/// `segments` with field `n` of segment `at` set to `value`.
fn with_field(segments: &[Vec<String>], at: usize, n: usize, value: &str) -> Vec<Vec<String>> {
    let mut out = segments.to_vec();
    let seg = &mut out[at];
    if seg.len() <= n {
        seg.resize(n + 1, String::new());
    }
    seg[n] = value.to_string();
    out
}

fn project(body: &Value, keys: &BTreeSet<Key>) -> Value {
    let mut out = serde_json::Map::new();
    for key in keys {
        match key {
            Key::Element(name) => {
                out.insert(name.clone(), body[name].clone());
                out.insert(format!("_{name}"), body[format!("_{name}")].clone());
            }
            Key::Referred(_) => {}
            Key::Extension(url) => {
                let matching: Vec<Value> = ["extension", "modifierExtension"]
                    .iter()
                    .filter_map(|e| body[*e].as_array())
                    .flatten()
                    .filter(|x| url.as_ref().is_none_or(|u| x["url"] == json!(u)))
                    .cloned()
                    .collect();
                out.insert(format!("extension {url:?}"), Value::Array(matching));
            }
        }
    }
    Value::Object(out)
}

/// What the resources of type `rtype` say at `keys`, in a stable order.
fn facts(text: &str, rtype: &str, keys: &BTreeSet<Key>) -> Result<Vec<Value>, String> {
    let msg = message::parse(text).map_err(|e| e.to_string())?;
    let mapped = map(&msg, b"ig-coverage", Zone::default()).map_err(|e| format!("{e:?}"))?;
    let mut out: Vec<Value> = mapped
        .resources
        .iter()
        .filter(|r| r.rtype == rtype)
        .map(|r| project(&r.body, keys))
        .collect();
    // the resources of a referred type, whole but for their ids (which may name a key)
    for key in keys {
        if let Key::Referred(t) = key {
            out.extend(
                mapped
                    .resources
                    .iter()
                    .filter(|r| r.rtype == t && r.rtype != rtype)
                    .map(|r| {
                        let mut b = r.body.clone();
                        if let Some(o) = b.as_object_mut() {
                            o.remove("id");
                        }
                        json!({ "referred": b })
                    }),
            );
        }
    }
    out.sort_by_key(Value::to_string);
    Ok(out)
}

/// Whether any of `facts` holds a value (not null, not an empty list).
fn holds_any(facts: &[Value]) -> bool {
    facts.iter().any(|f| {
        f.as_object().is_some_and(|o| {
            o.values()
                .any(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
        })
    })
}

struct Measured {
    claim: Claim,
    fields: Vec<(Field, Verdict)>,
}

impl Measured {
    fn count(&self, f: impl Fn(&Verdict) -> bool) -> usize {
        self.fields.iter().filter(|(_, v)| f(v)).count()
    }
    fn mapped(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Mapped))
    }
}

fn measure(claim: Claim, tables: &Path) -> Measured {
    let (segment, rtype) = claim
        .table
        .trim_end_matches(']')
        .split_once('[')
        .expect("a table is SEG[Resource]");
    let rtype = rtype.split('-').next().unwrap_or(rtype).to_string();
    let file = std::fs::read_dir(tables)
        .expect("the IG's segment tables")
        .map(|e| e.expect("a directory entry").path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(&format!("_ {} - ", claim.table)))
        })
        .unwrap_or_else(|| panic!("no IG table {}", claim.table));
    let mut rows = read_rows(&file);
    for row in &mut rows {
        for (slip, mended) in &claim.errata {
            if let Some(rest) = row.attribute.strip_prefix(slip.as_str()) {
                row.attribute = format!("{mended}{rest}");
            }
        }
    }
    let fields: Vec<Field> = fields(&rows)
        .into_iter()
        .filter(|f| !f.targets.is_empty())
        .collect();
    let message = std::fs::read_to_string(
        root()
            .join("tests/corpus/v2-to-fhir-ig/messages")
            .join(&claim.message),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", claim.message));
    let mut segments = segments_of(&message);
    let at = segments
        .iter()
        .position(|s| s[0] == segment)
        .unwrap_or_else(|| panic!("{} has no {segment}", claim.message));
    for field in &fields {
        let empty = segments[at].get(field.number).is_none_or(|v| v.is_empty());
        if empty && let Some(value) = sample(field) {
            segments = with_field(&segments, at, field.number, &value);
        }
    }
    let mut verdicts = Vec::new();
    for field in fields {
        let mut segments = segments.clone();
        for n in field.unless() {
            segments = with_field(&segments, at, n, "");
        }
        let full = text_of(&segments);
        let base = facts(&full, &rtype, &field.targets).unwrap_or_else(|e| {
            panic!(
                "{} with every field valued does not map: {e}\n{full}",
                claim.message
            )
        });
        let without = text_of(&with_field(&segments, at, field.number, ""));
        let mapped = match facts(&without, &rtype, &field.targets) {
            Ok(other) => other != base,
            Err(_) => holds_any(&base),
        };
        let verdict = match (mapped, claim.omitted.get(&field.id)) {
            (true, _) => Verdict::Mapped,
            (false, Some(reason)) => Verdict::Omitted(reason.clone()),
            (false, None) => Verdict::Missed,
        };
        verdicts.push((field, verdict));
    }
    Measured {
        claim,
        fields: verdicts,
    }
}

fn report(measured: &[Measured], not_claimed: &BTreeMap<String, String>) -> String {
    let (all, mapped, omitted): (usize, usize, usize) =
        measured.iter().fold((0, 0, 0), |(a, m, o), t| {
            (
                a + t.fields.len(),
                m + t.mapped(),
                o + t.count(|v| matches!(v, Verdict::Omitted(_))),
            )
        });
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# HL7v2 maps against the v2-to-FHIR IG's tables\n");
    let _ = writeln!(
        w,
        "Written by the test `ig_coverage` (`src/adapters/hl7v2/map/ig_coverage_tests.rs`) from \
         the IG's segment tables (`tests/corpus/v2-to-fhir-ig/segments/`) and the ledger \
         `capability/hl7v2/ig-coverage.json`; `EMRSYNC_UPDATE_DOCS=1 cargo test ig_coverage` \
         rewrites it. A field counts as mapped when taking it out of a message changes the \
         elements the IG maps it to; as omitted when the ledger says why the project leaves it \
         out; as missed otherwise.\n"
    );
    let _ = writeln!(
        w,
        "In all: **{mapped} of {all} fields mapped** ({}%), {omitted} omitted on purpose, {} missed, \
         over {} tables.\n",
        mapped * 100 / all.max(1),
        all - mapped - omitted,
        measured.len()
    );
    let _ = writeln!(
        w,
        "| IG table | message | fields the IG maps | mapped | omitted | missed |"
    );
    let _ = writeln!(w, "| --- | --- | --- | --- | --- | --- |");
    for t in measured {
        let o = t.count(|v| matches!(v, Verdict::Omitted(_)));
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {o} | {} |",
            t.claim.table,
            t.claim.message,
            t.fields.len(),
            t.mapped(),
            t.fields.len() - t.mapped() - o
        );
    }
    for t in measured {
        let _ = writeln!(w, "\n## {} ({})\n", t.claim.table, t.claim.message);
        let list = |w: &mut String, title: &str, pick: &dyn Fn(&Verdict) -> Option<String>| {
            let lines: Vec<String> = t
                .fields
                .iter()
                .filter_map(|(f, v)| pick(v).map(|why| format!("- {} {}{why}", f.id, f.name)))
                .collect();
            if !lines.is_empty() {
                let _ = writeln!(w, "{title}:\n\n{}\n", lines.join("\n"));
            }
        };
        list(w, "Mapped", &|v| {
            matches!(v, Verdict::Mapped).then(String::new)
        });
        list(w, "Omitted on purpose", &|v| match v {
            Verdict::Omitted(why) => Some(format!(": {why}")),
            _ => None,
        });
        list(w, "Missed", &|v| {
            matches!(v, Verdict::Missed).then(String::new)
        });
    }
    let _ = writeln!(w, "\n## IG tables not claimed\n");
    for (table, why) in not_claimed {
        let _ = writeln!(w, "- {table}: {why}");
    }
    out
}

#[test]
fn ig_coverage() {
    let ledger: Ledger = serde_json::from_str(
        &std::fs::read_to_string(root().join("capability/hl7v2/ig-coverage.json"))
            .expect("the coverage ledger"),
    )
    .expect("the coverage ledger is valid");
    let tables = root().join("tests/corpus/v2-to-fhir-ig/segments");
    let mut problems = Vec::new();

    // every IG table is claimed or set aside with a reason
    let claimed: BTreeSet<&str> = ledger.tables.iter().map(|c| c.table.as_str()).collect();
    for entry in std::fs::read_dir(&tables).expect("the IG's segment tables") {
        let name = entry.expect("an entry").file_name();
        let name = name.to_string_lossy();
        if let Some(table) = name
            .strip_prefix("HL7 Segment - FHIR R4_ ")
            .and_then(|n| n.split(" - ").next())
            && !claimed.contains(table)
            && !ledger.not_claimed.contains_key(table)
        {
            problems.push(format!(
                "IG table {table} is neither claimed nor set aside with a reason"
            ));
        }
    }

    let measured: Vec<Measured> = ledger
        .tables
        .into_iter()
        .map(|c| measure(c, &tables))
        .collect();
    for t in &measured {
        if t.mapped() < t.claim.min_mapped {
            problems.push(format!(
                "{}: {} fields mapped, fewer than the {} the ledger records",
                t.claim.table,
                t.mapped(),
                t.claim.min_mapped
            ));
        }
        for (field, verdict) in &t.fields {
            if matches!(verdict, Verdict::Mapped) && t.claim.omitted.contains_key(&field.id) {
                problems.push(format!(
                    "{}: the ledger says {} is omitted, but it is mapped",
                    t.claim.table, field.id
                ));
            }
        }
    }

    let text = report(&measured, &ledger.not_claimed);
    let docs = root().join("docs/hl7v2-ig-coverage.md");
    if std::env::var_os("EMRSYNC_UPDATE_DOCS").is_some() {
        std::fs::write(&docs, &text).expect("write the coverage report");
    } else if std::fs::read_to_string(&docs).unwrap_or_default() != text {
        problems.push(
            "docs/hl7v2-ig-coverage.md is not today's report: run \
             EMRSYNC_UPDATE_DOCS=1 cargo test ig_coverage"
                .into(),
        );
    }
    assert!(problems.is_empty(), "{}\n\n{text}", problems.join("\n"));
}
