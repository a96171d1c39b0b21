//! The v2-to-FHIR IG's code system maps published as ConceptMaps: every table of
//! `capability/hl7v2/v2-to-fhir/codesystems/`, with the project's choices
//! (`capability/hl7v2/code-maps.json`) over the tables the HL7v2 maps use, each choice's
//! reason as the target's comment. They are the same rows `codes` maps with, so
//! `ConceptMap/$translate` answers what an HL7v2 message's code became, and a target EMR's
//! outbound maps can read them in reverse.

use super::codes::{Choice, Row, Target, ig, overrides, rows};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// Where the published maps live.
pub const URL_BASE: &str = "http://emrsync.org/fhir/ConceptMap/";

/// A v2 table as the sheets name it (`HL70001`, a few `HL0207`) as its THO code system.
fn v2_system(table: &str) -> Option<String> {
    let digits = table.strip_prefix("HL7").or(table.strip_prefix("HL"))?;
    let digits = digits.trim();
    (digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("http://terminology.hl7.org/CodeSystem/v2-{digits}"))
}

/// A FHIR id from an IG table's name: `AllergySeverity[AllergyIntolerance.criticality]` ->
/// `v2-AllergySeverity-AllergyIntolerance.criticality`.
fn id_of(table: &str) -> String {
    let mut id = String::from("v2-");
    for c in table.chars() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' => id.push(c),
            _ if !id.ends_with('-') => id.push('-'),
            _ => {}
        }
    }
    let mut id = id.trim_end_matches('-').to_string();
    id.truncate(64);
    id
}

/// One table's rows with the project's choices applied.
fn chosen(csv: &str, choices: Option<&HashMap<String, Choice>>) -> Vec<(Row, Option<String>)> {
    let rows = rows(csv);
    let Some(choices) = choices else {
        return rows.into_iter().map(|r| (r, None)).collect();
    };
    // the table the sheet names most: the v2 system of a code the project adds
    let mut tables: HashMap<&str, usize> = HashMap::new();
    for r in &rows {
        *tables.entry(r.v2_table.as_str()).or_default() += 1;
    }
    let usual = tables
        .into_iter()
        .max_by_key(|(t, n)| (*n, std::cmp::Reverse(*t)))
        .map(|(t, _)| t.to_string())
        .unwrap_or_default();
    let mut out: Vec<(Row, Option<String>)> = rows
        .iter()
        .filter(|r| !choices.contains_key(&r.v2))
        .map(|r| (r.clone(), None))
        .collect();
    let mut mine: Vec<_> = choices.iter().collect();
    mine.sort_by_key(|(code, _)| code.as_str());
    for (code, choice) in mine {
        let Some(target) = &choice.target else {
            continue;
        };
        let text = rows
            .iter()
            .find(|r| &r.v2 == code)
            .map(|r| r.v2_text.clone());
        out.push((
            Row {
                v2: code.clone(),
                v2_text: text.unwrap_or_default(),
                v2_table: usual.clone(),
                target: target.clone(),
            },
            Some(choice.why.clone()),
        ));
    }
    out
}

fn target_json(t: &Target, comment: Option<String>) -> Value {
    let mut v = json!({"code": t.code, "equivalence": "equivalent"});
    if let Some(d) = &t.display {
        v["display"] = json!(d);
    }
    if let Some(c) = comment {
        v["comment"] = json!(c);
    }
    v
}

/// Every IG table as a ConceptMap (tables with no row a FHIR code can be read from are left
/// out: there is nothing to translate).
pub fn concept_maps() -> Vec<Value> {
    let overrides = overrides();
    let mut out = Vec::new();
    for (name, csv) in ig::IG_TABLES {
        let rows = chosen(csv, overrides.maps.get(*name));
        // groups by (v2 system, FHIR system), in a stable order
        let mut groups: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
        for (row, comment) in rows {
            let (Some(source), Some(target)) =
                (v2_system(&row.v2_table), row.target.system.clone())
            else {
                continue;
            };
            let elements = groups.entry((source, target)).or_default();
            let target = target_json(&row.target, comment);
            match elements.iter_mut().find(|e| e["code"] == json!(row.v2)) {
                Some(e) => {
                    if !e["target"].as_array().is_some_and(|t| t.contains(&target)) {
                        e["target"]
                            .as_array_mut()
                            .expect("built with targets")
                            .push(target);
                    }
                }
                None => {
                    let mut e = json!({"code": row.v2, "target": [target]});
                    if !row.v2_text.is_empty() {
                        e["display"] = json!(row.v2_text);
                    }
                    elements.push(e);
                }
            }
        }
        if groups.is_empty() {
            continue;
        }
        let id = id_of(name);
        out.push(json!({
            "resourceType": "ConceptMap",
            "id": id,
            "url": format!("{URL_BASE}{id}"),
            "version": env!("CARGO_PKG_VERSION"),
            "name": id.replace(['-', '.'], "_"),
            "title": format!("v2-to-FHIR: {name}"),
            "status": "active",
            "publisher": "emrsync",
            "description": format!(
                "The HL7 v2-to-FHIR Implementation Guide's concept map table {name} \
                 (capability/hl7v2/v2-to-fhir/codesystems/), with emrsync's choices over it \
                 (capability/hl7v2/code-maps.json; each says why in the target's comment). \
                 HL7v2 messages are mapped with these rows."
            ),
            "group": groups.into_iter().map(|((source, target), element)| json!({
                "source": source,
                "target": target,
                "element": element,
            })).collect::<Vec<_>>(),
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ig_s_tables_become_concept_maps_with_the_project_s_choices() {
        let maps = concept_maps();
        assert!(maps.len() > 60, "{} maps", maps.len());
        let find = |id: &str| maps.iter().find(|m| m["id"] == id).unwrap();
        let sex = find("v2-AdministrativeSex");
        let group = &sex["group"][0];
        assert_eq!(
            group["source"],
            "http://terminology.hl7.org/CodeSystem/v2-0001"
        );
        assert_eq!(group["target"], "http://hl7.org/fhir/administrative-gender");
        let code = |c: &str| {
            group["element"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["code"] == c)
                .cloned()
        };
        assert_eq!(code("F").unwrap()["target"][0]["code"], "female");
        // X is the project's addition, with its reason
        let x = code("X").unwrap();
        assert_eq!(x["target"][0]["code"], "other");
        assert!(x["target"][0]["comment"].as_str().unwrap().contains("v2.9"));
        // and the project's removals are gone: MA (miscellaneous allergy) maps to nothing
        let allergen = find("v2-AllergenType-AllergyIntoleranceCategory");
        let codes: Vec<_> = allergen["group"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["element"].as_array().unwrap())
            .map(|e| e["code"].as_str().unwrap())
            .collect();
        assert!(!codes.contains(&"MA") && codes.contains(&"DA"), "{codes:?}");
        // every id is a FHIR id, every map unique
        let mut ids: Vec<_> = maps.iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert!(
            ids.iter()
                .all(|i| crate::fhir::resource::FhirId::parse(i).is_ok())
        );
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), maps.len());
    }
}
