//! The FHIRPath that search parameters are written in: a parser (`parse`) and an evaluator over
//! a resource's JSON (`eval`). Only the subset the R4 SearchParameters use; see `parse.rs`.

mod eval;
mod parse;

pub use eval::{Item, Out, evaluate, evaluate_on};
pub use parse::{Expr, ParseError, parse};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval_str(expr: &str, resource: &serde_json::Value) -> Vec<serde_json::Value> {
        evaluate(&parse(expr).unwrap(), resource)
            .into_iter()
            .filter_map(|o| match o {
                Out::Item(i) => i.value.cloned(),
                Out::Literal(v) => Some(v),
            })
            .collect()
    }

    #[test]
    fn every_r4_search_parameter_expression_parses() {
        let all: serde_json::Value =
            serde_json::from_str(include_str!("../../../capability/search-parameters.json"))
                .unwrap();
        let mut total = 0;
        let mut failed = Vec::new();
        for (base, params) in all.as_object().unwrap() {
            for (code, p) in params.as_object().unwrap() {
                let mut exprs = vec![p["expression"].as_str().unwrap().to_string()];
                for c in p["components"].as_array().into_iter().flatten() {
                    exprs.push(c["expression"].as_str().unwrap().to_string());
                }
                for e in exprs {
                    total += 1;
                    if let Err(err) = parse(&e) {
                        failed.push(format!("{base}.{code}: {err}"));
                    }
                }
            }
        }
        assert!(total > 1700, "{total}");
        assert!(
            failed.is_empty(),
            "{} of {total} fail:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }

    #[test]
    fn paths_choices_and_types() {
        let obs = json!({"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},
            "subject":{"reference":"Patient/p1"},"valueQuantity":{"value":72,"unit":"/min"},
            "component":[{"code":{"text":"a"},"valueString":"x"},{"code":{"text":"b"},"valueQuantity":{"value":1}}]});
        assert_eq!(
            eval_str("Observation.code.coding.code", &obs),
            [json!("8867-4")]
        );
        assert_eq!(
            eval_str("(Observation.value as Quantity).value", &obs),
            [json!(72)]
        );
        assert!(eval_str("Observation.value as CodeableConcept", &obs).is_empty());
        assert_eq!(
            eval_str("Observation.value.as(Quantity).unit", &obs),
            [json!("/min")]
        );
        assert_eq!(
            eval_str("Observation.component.value.ofType(Quantity).value", &obs),
            [json!(1)]
        );
        assert_eq!(
            eval_str("Observation.subject.where(resolve() is Patient)", &obs).len(),
            1
        );
        assert!(eval_str("Observation.subject.where(resolve() is Group)", &obs).is_empty());
        assert_eq!(
            eval_str("Observation.component[1].code.text", &obs),
            [json!("b")]
        );
        // a path not starting at the type is relative to the input (composite components)
        assert_eq!(
            eval_str("code.coding.system", &obs),
            [json!("http://loinc.org")]
        );
    }

    #[test]
    fn where_equality_booleans_and_extensions() {
        let ad = json!({"resourceType":"ActivityDefinition","status":"draft",
            "relatedArtifact":[{"type":"composed-of","resource":"http://x/a"},{"type":"depends-on","resource":"http://x/b"}],
            "extension":[{"url":"http://e/1","valueString":"one"},{"url":"http://e/2","valueString":"two"}]});
        assert_eq!(
            eval_str(
                "ActivityDefinition.relatedArtifact.where(type='composed-of').resource",
                &ad
            ),
            [json!("http://x/a")]
        );
        assert_eq!(
            eval_str("ActivityDefinition.extension('http://e/2').value", &ad),
            [json!("two")]
        );
        let deceased = "Patient.deceased.exists() and Patient.deceased != false";
        let patient =
            |deceased: serde_json::Value| json!({"resourceType":"Patient","deceased": deceased});
        let with = |key: &str, v: serde_json::Value| {
            let mut p = patient(json!(null));
            p.as_object_mut().unwrap().remove("deceased");
            p[key] = v;
            eval_str(deceased, &p)
        };
        assert_eq!(with("deceasedBoolean", json!(true)), [json!(true)]);
        assert_eq!(with("deceasedBoolean", json!(false)), [json!(false)]);
        assert_eq!(with("deceasedDateTime", json!("2020-01-01")), [json!(true)]);
        assert_eq!(with("active", json!(true)), [json!(false)]);
        let contained = json!({"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","name":"Org"}]});
        assert_eq!(
            eval_str("Patient.contained.ofType(Organization).name", &contained),
            [json!("Org")]
        );
    }
}
