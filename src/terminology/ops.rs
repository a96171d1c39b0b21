//! The FHIR R4 terminology operations over the service: each reads its inputs (`Params`, the
//! same from a query string or a Parameters body) and answers as the specification's
//! OperationDefinition says (`Parameters`, or the expanded `ValueSet`).

use super::code_system::CodeSystem;
use super::concept_map::{Question, is_match};
use super::value_set::{self, Asked, Expansion};
use super::{TermError, Terminology, canonical};
use crate::fhir::parameters::{Answer, Params};
use serde_json::{Value, json};
use std::sync::Arc;

/// Concepts one `$expand` answer holds at most; a larger one is refused unless paged (`count`).
pub const MAX_RETURNED: usize = 10_000;

/// A coding as an operation is given it (from `code` and `system`, a Coding, or each Coding of
/// a CodeableConcept).
#[derive(Debug, Clone, Default)]
struct Given {
    system: Option<String>,
    version: Option<String>,
    code: String,
    display: Option<String>,
}

fn bad(text: impl Into<String>) -> TermError {
    TermError::Invalid(text.into())
}

fn given_from(coding: &Value) -> Option<Given> {
    Some(Given {
        system: coding["system"].as_str().map(str::to_string),
        version: coding["version"].as_str().map(str::to_string),
        code: coding["code"].as_str()?.to_string(),
        display: coding["display"].as_str().map(str::to_string),
    })
}

/// The codings asked about: `code` (with `system_param`), else `coding`, else the codings of
/// `codeableConcept`.
fn codings(p: &Params, system_param: &str, version_param: &str) -> Result<Vec<Given>, TermError> {
    if let Some(code) = p.text("code") {
        return Ok(vec![Given {
            system: p.text(system_param).map(str::to_string),
            version: p.text(version_param).map(str::to_string),
            code: code.to_string(),
            display: p.text("display").map(str::to_string),
        }]);
    }
    if let Some(c) = p.json("coding") {
        return given_from(c)
            .map(|g| vec![g])
            .ok_or_else(|| bad("coding: a Coding with a code is needed"));
    }
    if let Some(cc) = p.json("codeableConcept") {
        let all: Vec<Given> = cc["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(given_from)
            .collect();
        if all.is_empty() {
            return Err(bad("codeableConcept: no coding with a code"));
        }
        return Ok(all);
    }
    Err(bad("one of code, coding or codeableConcept is needed"))
}

fn system_of(
    t: &Terminology,
    url: &str,
    version: Option<&str>,
) -> Result<Arc<CodeSystem>, TermError> {
    t.code_system(url, version)?.ok_or_else(|| {
        TermError::NotFound(format!(
            "the code system {url}{} is not known to this server",
            version
                .map(|v| format!(" (version {v})"))
                .unwrap_or_default()
        ))
    })
}

/// `CodeSystem/$lookup`: what the server knows of one code.
/// (`$lookup` has no instance level: `_instance` is always None.)
pub fn lookup(t: &Terminology, p: &Params, _instance: Option<&str>) -> Result<Value, TermError> {
    let g = match (p.text("code"), p.json("coding")) {
        (Some(code), _) => Given {
            system: p.text("system").map(str::to_string),
            version: p.text("version").map(str::to_string),
            code: code.to_string(),
            display: None,
        },
        (None, Some(c)) => {
            given_from(c).ok_or_else(|| bad("coding: a Coding with a code is needed"))?
        }
        (None, None) => return Err(bad("$lookup needs code and system, or coding")),
    };
    let system = g
        .system
        .as_deref()
        .ok_or_else(|| bad("$lookup needs the code's system"))?;
    let cs = system_of(t, system, g.version.as_deref())?;
    let concept = cs.concept(&g.code).ok_or_else(|| {
        TermError::NotFound(format!(
            "the code {} is not in the code system {system}",
            g.code
        ))
    })?;
    let wanted = p.texts("property");
    let asked = |name: &str| wanted.is_empty() || wanted.contains(&name);
    let language = p.text("displayLanguage");
    let display = super::code_system::in_language(
        concept.display.as_deref(),
        concept.designations.as_ref(),
        language,
    );
    let mut answer = Answer::default()
        .value(
            "name",
            "String",
            json!(
                cs.name
                    .clone()
                    .or(cs.title.clone())
                    .unwrap_or_else(|| cs.url.clone())
            ),
        )
        .maybe(
            "version",
            "String",
            Some(cs.version.clone()).filter(|v| !v.is_empty()),
        )
        .value("display", "String", json!(display.unwrap_or(&concept.code)));
    for d in concept
        .designations
        .iter()
        .flat_map(|d| d.as_array())
        .flatten()
    {
        let mut part = Answer::default().maybe("language", "Code", d["language"].as_str());
        if d["use"].is_object() {
            part = part.value("use", "Coding", d["use"].clone());
        }
        answer = answer.parts(
            "designation",
            part.maybe("value", "String", d["value"].as_str()),
        );
    }
    if asked("definition")
        && let Some(def) = &concept.definition
    {
        answer = answer.parts(
            "property",
            Answer::default()
                .value("code", "Code", json!("definition"))
                .value("value", "String", json!(def)),
        );
    }
    if asked("inactive") {
        answer = answer.parts(
            "property",
            Answer::default()
                .value("code", "Code", json!("inactive"))
                .value("value", "Boolean", json!(concept.inactive)),
        );
    }
    for (name, related) in [
        ("parent", cs.parents_of(&concept.code)),
        ("child", cs.children_of(&concept.code)),
    ] {
        if !asked(name) {
            continue;
        }
        for r in related {
            let mut part = Answer::default().value("code", "Code", json!(name)).value(
                "value",
                "Code",
                json!(r.code),
            );
            if let Some(d) = &r.display {
                part = part.value("description", "String", json!(d));
            }
            answer = answer.parts("property", part);
        }
    }
    for prop in concept
        .properties
        .iter()
        .flat_map(|p| p.as_array())
        .flatten()
    {
        let Some(code) = prop["code"].as_str() else {
            continue;
        };
        if matches!(code, "parent" | "child") || !asked(code) {
            continue;
        }
        let Some((key, value)) = prop
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")))
        else {
            continue;
        };
        let kind = key.trim_start_matches("value");
        answer = answer.parts(
            "property",
            Answer::default().value("code", "Code", json!(code)).value(
                "value",
                kind,
                value.clone(),
            ),
        );
    }
    Ok(answer.build())
}

/// The displays a code may be given with: its display and every designation.
fn displays(concept: &super::code_system::Concept) -> Vec<&str> {
    let mut all: Vec<&str> = concept.display.as_deref().into_iter().collect();
    for d in concept
        .designations
        .iter()
        .flat_map(|d| d.as_array())
        .flatten()
    {
        if let Some(v) = d["value"].as_str() {
            all.push(v);
        }
    }
    all
}

fn same_display(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    norm(a) == norm(b)
}

/// What one coding came to: valid or not, why (a warning when valid), and the code's display
/// when the code was found.
struct Checked {
    valid: bool,
    message: Option<String>,
    display: Option<String>,
}

impl Checked {
    fn invalid(message: String) -> Checked {
        Checked {
            valid: false,
            message: Some(message),
            display: None,
        }
    }
}

/// The verdict on the codings asked about: valid when one is (a clean one first), else not,
/// with every reason.
fn verdict(results: Vec<Checked>) -> Value {
    let answer = |c: &Checked, message: Option<String>| {
        Answer::default()
            .value("result", "Boolean", json!(c.valid))
            .maybe("message", "String", message)
            .maybe("display", "String", c.display.clone())
    };
    let best = results
        .iter()
        .find(|c| c.valid && c.message.is_none())
        .or_else(|| results.iter().find(|c| c.valid));
    if let Some(c) = best {
        return answer(c, c.message.clone()).build();
    }
    let reasons: Vec<String> = results.iter().filter_map(|c| c.message.clone()).collect();
    let shown = results
        .iter()
        .find(|c| c.display.is_some())
        .unwrap_or(&results[0]);
    answer(shown, Some(reasons.join("; ")))
        .resource(
            "issues",
            crate::fhir::operation_outcome(
                &reasons
                    .iter()
                    .map(|r| crate::fhir::Issue::error("code-invalid", r.clone()))
                    .collect::<Vec<_>>(),
            ),
        )
        .build()
}

/// One coding against one code system.
fn check_in_system(cs: &CodeSystem, g: &Given) -> Checked {
    let Some(concept) = cs.concept(&g.code) else {
        let whole = match cs.is_complete() {
            true => String::new(),
            false => format!(
                " (the server holds only part of it: content {})",
                cs.content
            ),
        };
        return Checked::invalid(format!(
            "the code {} is not in the code system {}{whole}",
            g.code, cs.url
        ));
    };
    let display = concept
        .display
        .clone()
        .unwrap_or_else(|| concept.code.clone());
    if let Some(d) = &g.display
        && !displays(concept).iter().any(|x| same_display(x, d))
    {
        return Checked {
            valid: false,
            message: Some(format!(
                "The display \"{d}\" is incorrect for {}#{}: it is \"{display}\"",
                cs.url, concept.code
            )),
            display: Some(display),
        };
    }
    Checked {
        valid: true,
        message: concept
            .inactive
            .then(|| format!("the code {} of {} is inactive", concept.code, cs.url)),
        display: Some(display),
    }
}

/// `CodeSystem/$validate-code` (the instance's code system when `id` is given).
pub fn validate_in_system(
    t: &Terminology,
    p: &Params,
    id: Option<&str>,
) -> Result<Value, TermError> {
    let codings = codings(p, "url", "version")?;
    let cs = match id {
        Some(id) => Some(t.code_system_of(id)?),
        None => {
            let url = p
                .text("url")
                .or(codings[0].system.as_deref())
                .ok_or_else(|| bad("$validate-code needs the code system's url"))?;
            let (url, v) = canonical(url);
            t.code_system(url, p.text("version").or(v))?
        }
    };
    let results = codings
        .iter()
        .map(|g| match &cs {
            None => Checked::invalid(format!(
                "the code system {} is not known to this server",
                p.text("url").or(g.system.as_deref()).unwrap_or("")
            )),
            Some(cs)
                if g.system.as_deref().is_some_and(|s| s != cs.url) && p.text("code").is_none() =>
            {
                Checked::invalid(format!(
                    "the coding's system {} is not the code system {}",
                    g.system.as_deref().unwrap_or(""),
                    cs.url
                ))
            }
            Some(cs) => check_in_system(cs, g),
        })
        .collect();
    Ok(verdict(results))
}

/// `CodeSystem/$subsumes`.
pub fn subsumes(t: &Terminology, p: &Params, id: Option<&str>) -> Result<Value, TermError> {
    let pick = |code: &str, coding: &str| -> Result<Given, TermError> {
        match (p.text(code), p.json(coding)) {
            (Some(c), _) => Ok(Given {
                system: p.text("system").map(str::to_string),
                code: c.to_string(),
                ..Default::default()
            }),
            (None, Some(c)) => given_from(c).ok_or_else(|| bad(format!("{coding}: no code"))),
            (None, None) => Err(bad(format!("$subsumes needs {code} (or {coding})"))),
        }
    };
    let (a, b) = (pick("codeA", "codingA")?, pick("codeB", "codingB")?);
    let cs = match id {
        Some(id) => t.code_system_of(id)?,
        None => {
            let system = a
                .system
                .as_deref()
                .or(b.system.as_deref())
                .ok_or_else(|| bad("$subsumes needs the system"))?;
            if a.system.is_some() && b.system.is_some() && a.system != b.system {
                return Err(bad("codingA and codingB are of different systems"));
            }
            system_of(t, system, p.text("version"))?
        }
    };
    let outcome = cs.subsumes(&a.code, &b.code).ok_or_else(|| {
        let missing = if cs.concept(&a.code).is_none() {
            &a.code
        } else {
            &b.code
        };
        TermError::NotFound(format!(
            "the code {missing} is not in the code system {}",
            cs.url
        ))
    })?;
    Ok(Answer::default()
        .value("outcome", "Code", json!(outcome.code()))
        .build())
}

/// The value set an operation names: the instance, an inline `valueSet`, or `url`.
enum Named {
    Stored(String, Option<String>),
    Inline(Value),
}

fn named_value_set(t: &Terminology, p: &Params, id: Option<&str>) -> Result<Named, TermError> {
    if let Some(id) = id {
        let vs = t.value_set_of(id)?;
        let url = vs["url"].as_str().unwrap_or("").to_string();
        return Ok(Named::Stored(
            url,
            vs["version"].as_str().map(str::to_string),
        ));
    }
    if let Some(vs) = p.json("valueSet") {
        if vs["resourceType"] != "ValueSet" {
            return Err(bad("valueSet: a ValueSet resource is needed"));
        }
        return Ok(Named::Inline(vs.clone()));
    }
    let url = p
        .text("url")
        .ok_or_else(|| bad("the value set is needed: url, valueSet, or the instance"))?;
    let (url, v) = canonical(url);
    Ok(Named::Stored(
        url.to_string(),
        p.text("valueSetVersion").or(v).map(str::to_string),
    ))
}

fn expansion_of(t: &Terminology, named: &Named) -> Result<(Arc<Expansion>, Value), TermError> {
    match named {
        Named::Stored(url, version) => {
            let vs = t.value_set(url, version.as_deref())?.ok_or_else(|| {
                TermError::NotFound(format!("the value set {url} is not known to this server"))
            })?;
            Ok((t.expansion(url, version.as_deref())?, (*vs).clone()))
        }
        Named::Inline(vs) => Ok((Arc::new(value_set::expand(t, vs)?), vs.clone())),
    }
}

/// `ValueSet/$expand`.
pub fn expand(t: &Terminology, p: &Params, id: Option<&str>) -> Result<Value, TermError> {
    let named = named_value_set(t, p, id)?;
    let asked = Asked {
        filter: p.text("filter").map(str::to_string),
        offset: p.count("offset").map_err(bad)?.unwrap_or(0),
        count: p.count("count").map_err(bad)?,
        active_only: p.bool("activeOnly").map_err(bad)?.unwrap_or(false),
    };
    let language = p.text("displayLanguage");
    let designations = p.bool("includeDesignations").map_err(bad)?.unwrap_or(false);
    let (expansion, vs) = expansion_of(t, &named)?;
    let (total, page) = expansion.select(&Asked {
        count: Some(
            asked
                .count
                .unwrap_or(MAX_RETURNED + 1)
                .min(MAX_RETURNED + 1),
        ),
        ..asked.clone()
    });
    if asked.count.is_none() && page.len() > MAX_RETURNED {
        return Err(TermError::TooCostly(format!(
            "the expansion has {total} concepts, more than the {MAX_RETURNED} this server returns at once: page it with count and offset, or narrow it with filter"
        )));
    }
    let page = &page[..page.len().min(MAX_RETURNED)];
    let contains: Vec<Value> = page
        .iter()
        .map(|c| {
            let mut e = json!({"system": &*c.system, "code": c.code});
            if !c.version.is_empty() {
                e["version"] = json!(&*c.version);
            }
            if let Some(d) = c.display_in(language) {
                e["display"] = json!(d);
            }
            if c.inactive {
                e["inactive"] = json!(true);
            }
            if designations && let Some(d) = &c.designations {
                e["designation"] = d.clone();
            }
            e
        })
        .collect();
    let mut parameter: Vec<Value> = expansion
        .used
        .iter()
        .map(|u| json!({"name": "used-codesystem", "valueUri": u}))
        .collect();
    if let Some(f) = &asked.filter {
        parameter.push(json!({"name": "filter", "valueString": f}));
    }
    if let Some(c) = asked.count {
        parameter.push(json!({"name": "count", "valueInteger": c}));
    }
    parameter.push(json!({"name": "offset", "valueInteger": asked.offset}));
    if asked.active_only {
        parameter.push(json!({"name": "activeOnly", "valueBoolean": true}));
    }
    if let Some(l) = language {
        parameter.push(json!({"name": "displayLanguage", "valueCode": l}));
    }
    for w in &expansion.warnings {
        parameter.push(json!({"name": "warning", "valueString": w}));
    }
    let mut out =
        json!({"resourceType": "ValueSet", "status": vs["status"].as_str().unwrap_or("active")});
    for k in ["id", "url", "version", "name", "title"] {
        if !vs[k].is_null() {
            out[k] = vs[k].clone();
        }
    }
    out["expansion"] = json!({
        "identifier": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        "timestamp": crate::fhir::resource::instant(crate::fhir::resource::now_micros()),
        "total": total,
        "offset": asked.offset,
        "parameter": parameter,
        "contains": contains,
    });
    if contains_is_empty(&out) {
        out["expansion"]
            .as_object_mut()
            .map(|e| e.remove("contains"));
    }
    Ok(out)
}

fn contains_is_empty(vs: &Value) -> bool {
    vs["expansion"]["contains"]
        .as_array()
        .is_some_and(|c| c.is_empty())
}

/// `ValueSet/$validate-code`.
pub fn validate_in_value_set(
    t: &Terminology,
    p: &Params,
    id: Option<&str>,
) -> Result<Value, TermError> {
    let codings = codings(p, "system", "systemVersion")?;
    let named = named_value_set(t, p, id)?;
    let label = match &named {
        Named::Stored(url, _) => url.clone(),
        Named::Inline(vs) => vs["url"]
            .as_str()
            .unwrap_or("(the value set given)")
            .to_string(),
    };
    let expansion = match expansion_of(t, &named) {
        Ok((e, _)) => e,
        Err(TermError::NotFound(why)) | Err(TermError::Invalid(why)) => {
            return Ok(verdict(vec![Checked::invalid(format!(
                "the value set {label} cannot be checked: {why}"
            ))]));
        }
        Err(e) => return Err(e),
    };
    let results = codings
        .iter()
        .map(|g| {
            let Some(system) = g.system.as_deref() else {
                return Checked::invalid(format!(
                    "the code {} is given without its system",
                    g.code
                ));
            };
            let Some(found) = expansion.find(system, &g.code) else {
                return Checked::invalid(format!(
                    "the code {system}#{} is not in the value set {label}",
                    g.code
                ));
            };
            // the code system (when held) knows every display of the code
            if let Ok(Some(cs)) = t.code_system(system, g.version.as_deref())
                && cs.concept(&g.code).is_some()
            {
                return check_in_system(&cs, g);
            }
            let display = found.display.clone().unwrap_or_else(|| g.code.clone());
            if let Some(d) = &g.display
                && !same_display(d, &display)
            {
                return Checked {
                    valid: false,
                    message: Some(format!(
                        "The display \"{d}\" is incorrect for {system}#{}: it is \"{display}\"",
                        g.code
                    )),
                    display: Some(display),
                };
            }
            Checked {
                valid: true,
                message: None,
                display: Some(display),
            }
        })
        .collect();
    Ok(verdict(results))
}

/// `ConceptMap/$translate` (the instance's map when `id` is given).
pub fn translate(t: &Terminology, p: &Params, id: Option<&str>) -> Result<Value, TermError> {
    let given = codings(p, "system", "version")?;
    let maps = t.maps()?;
    let url = match id {
        Some(id) => Some(
            t.read(|c| super::tables::of_resource(c, "ConceptMap", id))?
                .ok_or_else(|| TermError::NotFound(format!("ConceptMap/{id} is not known")))?
                .url,
        ),
        None => p.text("url").map(|u| canonical(u).0.to_string()),
    };
    if let Some(u) = &url
        && !maps.knows(u)
    {
        return Err(TermError::NotFound(format!(
            "the concept map {u} is not known to this server"
        )));
    }
    let reverse = p.bool("reverse").map_err(bad)?.unwrap_or(false);
    let mut answer = Answer::default();
    let mut found = false;
    for g in &given {
        if g.system.is_none() {
            return Err(bad(format!(
                "the code {} is given without its system",
                g.code
            )));
        }
        let q = Question {
            url: url.clone(),
            map_version: p.text("conceptMapVersion").map(str::to_string),
            system: g.system.clone(),
            code: g.code.clone(),
            source: p.text("source").map(|s| canonical(s).0.to_string()),
            target: p.text("target").map(|s| canonical(s).0.to_string()),
            target_system: p.text("targetsystem").map(str::to_string),
            reverse,
        };
        for m in maps.translate(&q) {
            found |= is_match(&m.target.equivalence);
            let mut part =
                Answer::default().value("equivalence", "Code", json!(m.target.equivalence));
            if let Some(code) = &m.target.code {
                let mut coding = json!({"code": code});
                for (k, v) in [
                    ("system", &m.target.system),
                    ("version", &m.target.version),
                    ("display", &m.target.display),
                ] {
                    if let Some(v) = v {
                        coding[k] = json!(v);
                    }
                }
                part = part.value("concept", "Coding", coding);
            }
            answer = answer.parts("match", part.value("source", "Uri", json!(m.source_map)));
        }
    }
    let mut out = Answer::default().value("result", "Boolean", json!(found));
    if !found {
        let codes: Vec<String> = given
            .iter()
            .map(|g| format!("{}#{}", g.system.as_deref().unwrap_or(""), g.code))
            .collect();
        out = out.value(
            "message",
            "String",
            json!(format!(
                "no map of this server translates {}",
                codes.join(", ")
            )),
        );
    }
    let mut built = out.build();
    let matches = answer.build();
    if let (Some(all), Some(more)) = (
        built["parameter"].as_array_mut(),
        matches["parameter"].as_array(),
    ) {
        all.extend(more.iter().cloned());
    }
    Ok(built)
}

/// The TerminologyCapabilities of this server (`GET /metadata?mode=terminology`): every code
/// system it holds, with its versions, and what `$expand`, `$validate-code` and `$translate` do.
pub fn capabilities(t: &Terminology, base_url: &str) -> Result<Value, TermError> {
    let rows = t.store().read(|c| super::tables::all_of(c, "CodeSystem"))?;
    let mut by_url: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in rows {
        by_url.entry(r.url).or_default().push(r.version);
    }
    let code_systems: Vec<Value> = by_url
        .into_iter()
        .map(|(url, mut versions)| {
            versions.sort_by(|a, b| super::version_order(a, b));
            let latest = versions.last().cloned().unwrap_or_default();
            let versions: Vec<Value> = versions
                .iter()
                .filter(|v| !v.is_empty())
                .map(|v| json!({"code": v, "isDefault": *v == latest}))
                .collect();
            let mut cs = json!({"uri": url});
            if !versions.is_empty() {
                cs["version"] = Value::Array(versions);
            }
            cs
        })
        .collect();
    Ok(json!({
        "resourceType": "TerminologyCapabilities",
        "status": "active",
        "date": crate::fhir::resource::instant(crate::fhir::resource::now_micros()),
        "kind": "instance",
        "software": {"name": "emrsync", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "emrsync terminology service", "url": base_url},
        "codeSystem": code_systems,
        "expansion": {
            "hierarchical": false,
            "paging": true,
            "incomplete": false,
            "parameter": [
                {"name": "filter"}, {"name": "count"}, {"name": "offset"},
                {"name": "activeOnly"}, {"name": "displayLanguage"}, {"name": "includeDesignations"}
            ],
            "textFilter": "Each word of the filter starts a word of the display, or the filter is the code."
        },
        "codeSearch": "all",
        "validateCode": {"translations": false},
        "translation": {"needsMap": false},
        "closure": {"translation": false}
    }))
}
