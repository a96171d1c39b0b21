//! Property tests of the FHIR parsers that take outside bytes (JSON and XML bodies, JSON
//! Patch, JSON Merge Patch, FHIRPath Patch): whatever arrives, they answer or refuse, never panic or overflow, and what they
//! accept stays within the bounds of `nesting` and `patch`.

use super::nesting::{self, MAX_BODY_DEPTH, MAX_DEPTH};
use super::{model, patch, validate};
use proptest::prelude::*;
use serde_json::{Value, json};

/// JSON shaped like FHIR (element names of Patient and its types, extensions in extensions),
/// nested up to about 160 levels: past every bound, so both sides of each are tried.
fn fhirish_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!("x")),
        Just(json!(1.5)),
        Just(json!(true)),
        Just(json!("2024-02-30")),
        Just(json!("")),
        Just(Value::Null),
    ];
    let key = prop::sample::select(vec![
        "extension",
        "url",
        "valueString",
        "name",
        "family",
        "given",
        "identifier",
        "system",
        "value",
        "telecom",
        "contained",
        "resourceType",
        "id",
        "text",
        "div",
        "coding",
        "_given",
    ]);
    let tree = leaf.prop_recursive(8, 64, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.into(), v)).collect())),
        ]
    });
    // a tree under up to 75 extensions in extensions (two levels each)
    (tree, 0usize..75).prop_map(|(mut v, wraps)| {
        for _ in 0..wraps {
            v = json!({"url": "u", "extension": [v]});
        }
        json!({"resourceType": "Patient", "extension": [v]})
    })
}

/// XML tags of FHIR element names, opened and closed in any order, up to 300 deep.
fn fhirish_xml() -> impl Strategy<Value = String> {
    let tag = prop::sample::select(vec![
        "<extension url=\"u\">",
        "</extension>",
        "<valueString value=\"x\"/>",
        "<name>",
        "</name>",
        "<family value=\"F\"/>",
        "<contained>",
        "</contained>",
        "<Patient xmlns=\"http://hl7.org/fhir\">",
        "</Patient>",
        "<div xmlns=\"http://www.w3.org/1999/xhtml\">",
        "</div>",
        "<![CDATA[x]]>",
        "<!DOCTYPE x>",
        "&amp;",
    ]);
    (
        prop::collection::vec(tag, 0..40),
        0usize..300,
        prop::sample::select(vec!["<extension url=\"u\">", "<name>", "<contained>"]),
    )
        .prop_map(|(tags, deep, repeated)| {
            let mut s = String::from("<Patient xmlns=\"http://hl7.org/fhir\">");
            s.push_str(&repeated.repeat(deep));
            s.extend(tags);
            s.push_str(&"</extension>".repeat(deep));
            s.push_str("</Patient>");
            s
        })
}

/// Patch operations over the paths of a small Patient, `copy` and `move` among them.
fn patch_ops() -> impl Strategy<Value = Value> {
    let path = prop::sample::select(vec![
        "/name",
        "/name/0",
        "/name/-",
        "/name/0/given",
        "/name/0/given/-",
        "/extension",
        "/extension/0",
        "/extension/0/extension",
        "/extension/-",
        "/id",
        "/gender",
        "",
        "/x/y",
    ]);
    let op = (
        prop::sample::select(vec![
            "add", "remove", "replace", "copy", "move", "test", "bad",
        ]),
        path.clone(),
        path,
        prop_oneof![
            Just(json!("v")),
            Just(json!([{"url": "u"}])),
            Just(json!({"family": "F"}))
        ],
    )
        .prop_map(
            |(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}),
        );
    prop::collection::vec(op, 0..60).prop_map(Value::Array)
}

/// FHIRPath Patch documents: up to 60 operations of any type on paths that select nothing,
/// one element or several, with values small and nested.
fn fhirpath_patches() -> impl Strategy<Value = Value> {
    let op = (
        prop::sample::select(vec!["add", "insert", "delete", "replace", "move", "bad"]),
        prop::sample::select(vec![
            "Patient",
            "Patient.name",
            "Patient.name[0]",
            "Patient.name.given",
            "Patient.extension",
            "Patient.extension[0]",
            "Patient.extension.extension",
            "Patient.telecom",
            "Patient.gender",
            "Patient.name.where(family='F')",
            "Patient.(",
        ]),
        prop::sample::select(vec!["name", "given", "extension", "gender", "deceased", "x"]),
        prop_oneof![
            Just(json!({"name": "value", "valueString": "v"})),
            Just(json!({"name": "value", "valueExtension": {"url": "u", "extension": [{"url": "v"}]}})),
            Just(json!({"name": "value", "part": [{"name": "family", "valueString": "F"}]})),
            Just(json!({"name": "value"})),
        ],
        0u64..4,
        0u64..4,
    )
        .prop_map(|(kind, path, name, value, a, b)| {
            json!({"name": "operation", "part": [
                {"name": "type", "valueCode": kind},
                {"name": "path", "valueString": path},
                {"name": "name", "valueString": name},
                value,
                {"name": "index", "valueInteger": a},
                {"name": "source", "valueInteger": a},
                {"name": "destination", "valueInteger": b},
            ]})
        });
    prop::collection::vec(op, 0..60)
        .prop_map(|ops| json!({"resourceType": "Parameters", "parameter": ops}))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_json_is_validated_or_refused_within_the_depth_bound(mut v in fhirish_json()) {
        let depth = nesting::depth(&v);
        // fhirbolt alone, on anything: an answer or an error
        let _ = model::canonical_json(v.clone());
        // the write path: validated, then made canonical, then rendered
        let report = validate::validate_resource(&mut v, false);
        if depth > MAX_DEPTH {
            prop_assert!(!report.is_valid());
        }
        if report.is_valid() && let Ok(c) = model::canonical_json(v) {
            prop_assert!(nesting::depth(&c) <= MAX_DEPTH);
            prop_assert!(model::json_to_xml(c).is_ok());
        }
    }

    #[test]
    fn any_xml_is_parsed_or_refused_within_the_depth_bound(xml in fhirish_xml()) {
        if let Ok(v) = model::xml_to_json(xml.as_bytes()) {
            prop_assert!(nesting::depth(&v) <= MAX_BODY_DEPTH);
        }
    }

    #[test]
    fn any_patch_applies_or_is_refused_within_the_bounds(ops in patch_ops()) {
        let mut doc = json!({"resourceType": "Patient", "id": "p",
                             "name": [{"family": "F", "given": ["G"]}],
                             "extension": [{"url": "u", "valueString": "s"}]});
        let max = 4096;
        if patch::apply(&mut doc, &ops, max).is_ok() {
            prop_assert!(nesting::depth(&doc) <= MAX_DEPTH);
            prop_assert!(doc.to_string().len() <= max, "{}", doc.to_string().len());
        }
    }

    #[test]
    fn any_merge_patch_applies_or_is_refused_within_the_bounds(p in fhirish_json()) {
        let mut doc = json!({"resourceType": "Patient", "id": "p",
                             "name": [{"family": "F", "given": ["G"]}]});
        let max = 4096;
        if patch::Patch::Merge(p).apply(&mut doc, max).is_ok() {
            prop_assert!(nesting::depth(&doc) <= MAX_DEPTH);
            prop_assert!(doc.to_string().len() <= max, "{}", doc.to_string().len());
        }
    }

    #[test]
    fn any_fhirpath_patch_applies_or_is_refused_within_the_bounds(p in fhirpath_patches()) {
        let mut doc = json!({"resourceType": "Patient", "id": "p",
                             "name": [{"family": "F", "given": ["G"]}],
                             "extension": [{"url": "u", "valueString": "s"}]});
        let max = 4096;
        if patch::Patch::FhirPath(p).apply(&mut doc, max).is_ok() {
            prop_assert!(nesting::depth(&doc) <= MAX_DEPTH);
            prop_assert!(doc.to_string().len() <= max, "{}", doc.to_string().len());
        }
    }

    #[test]
    fn any_text_query_is_parsed_or_refused_into_words_only(
        value in "[a-zA-Zé0-9 \"*,()\\-]{0,40}|OR|.{0,600}"
    ) {
        use super::search::text::{TextField, TextQuery};
        if let Ok(q) = TextQuery::parse("_text", TextField::Narrative, &value) {
            prop_assert!(!q.any_of.is_empty());
            prop_assert!(q.any_of.iter().map(Vec::len).sum::<usize>() <= 16);
            for t in q.any_of.iter().flatten() {
                prop_assert!(!t.words.is_empty());
                // nothing but letters and digits reaches either engine's query syntax
                for w in &t.words {
                    prop_assert!(!w.is_empty() && w.chars().all(char::is_alphanumeric), "{w:?}");
                }
            }
            prop_assert!(q.any_of.iter().all(|g| g.iter().any(|t| !t.negate)));
        }
    }

    #[test]
    fn any_resource_s_text_is_words_within_the_bound(v in fhirish_json()) {
        let e = super::search::text::entry(&v);
        for text in [&e.narrative, &e.content] {
            prop_assert!(text.len() <= 64 * 1024);
            prop_assert!(text.split(' ').all(|w| w.chars().all(char::is_alphanumeric)));
        }
    }

    #[test]
    fn any_filter_expression_is_parsed_or_refused_within_the_bounds(
        words in prop::collection::vec(prop::sample::select(vec![
            "name", "gender", "birthdate", "subject.name", "general-practitioner.name",
            "eq", "ne", "co", "sw", "ew", "gt", "ge", "pr", "in", "sb", "and", "or", "not",
            "(", ")", "\"pet\"", "\"a, b\"", "male", "2014-10-10", "true", "x[y]", "\"",
        ]), 0..200)
    ) {
        use super::search::filter::MAX_TERMS;
        let text = words.join(" ");
        for rtype in ["Patient", "Observation"] {
            if let Ok(f) = super::search::filter_expr::parse_filter_expression(rtype, &text) {
                prop_assert!(f.size() <= 64 * MAX_TERMS);
            }
        }
    }
}
