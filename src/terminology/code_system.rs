//! One code system in memory, as the operations use it: its concepts by code, their display,
//! designations and properties, and the hierarchy both ways. Built from the terminology rows
//! (`tables`) and the CodeSystem resource's header; read by `$lookup`, `$validate-code`,
//! `$subsumes` and the value set filters.

use super::tables::{ConceptRow, ParentRow};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};

#[derive(Debug, Clone)]
pub struct Concept {
    pub code: String,
    pub display: Option<String>,
    pub definition: Option<String>,
    pub inactive: bool,
    /// `CodeSystem.concept.property` as given (JSON array), when there are any.
    pub properties: Option<Value>,
    /// `CodeSystem.concept.designation` as given (JSON array), when there are any.
    pub designations: Option<Value>,
}

/// What the header declares about a property (`CodeSystem.property`).
#[derive(Debug, Clone)]
pub struct PropertyDef {
    pub code: String,
    pub uri: Option<String>,
    pub kind: String,
}

#[derive(Debug)]
pub struct CodeSystem {
    pub resource_id: String,
    pub url: String,
    pub version: String,
    pub name: Option<String>,
    pub title: Option<String>,
    pub content: String,
    pub case_sensitive: bool,
    pub property_defs: Vec<PropertyDef>,
    concepts: Vec<Concept>,
    by_code: HashMap<String, u32>,
    parents: Vec<Vec<u32>>,
    children: Vec<Vec<u32>>,
}

/// How two codes stand (`$subsumes`'s outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subsumption {
    Equivalent,
    Subsumes,
    SubsumedBy,
    NotSubsumed,
}

impl Subsumption {
    pub fn code(self) -> &'static str {
        match self {
            Subsumption::Equivalent => "equivalent",
            Subsumption::Subsumes => "subsumes",
            Subsumption::SubsumedBy => "subsumed-by",
            Subsumption::NotSubsumed => "not-subsumed",
        }
    }
}

impl CodeSystem {
    /// The code system `header` (its CodeSystem resource, concepts aside) describes, with the
    /// concepts and parent links of its rows.
    pub fn build(
        resource_id: &str,
        header: &Value,
        rows: Vec<ConceptRow>,
        links: Vec<ParentRow>,
    ) -> CodeSystem {
        let text = |k: &str| header[k].as_str().map(str::to_string);
        let case_sensitive = header["caseSensitive"].as_bool().unwrap_or(true);
        let property_defs = header["property"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some(PropertyDef {
                    code: p["code"].as_str()?.to_string(),
                    uri: p["uri"].as_str().map(str::to_string),
                    kind: p["type"].as_str().unwrap_or("string").to_string(),
                })
            })
            .collect();
        let mut cs = CodeSystem {
            resource_id: resource_id.to_string(),
            url: text("url").unwrap_or_default(),
            version: text("version").unwrap_or_default(),
            name: text("name"),
            title: text("title"),
            content: text("content").unwrap_or_else(|| "complete".into()),
            case_sensitive,
            property_defs,
            concepts: Vec::with_capacity(rows.len()),
            by_code: HashMap::with_capacity(rows.len()),
            parents: Vec::new(),
            children: Vec::new(),
        };
        for r in rows {
            let key = cs.key(&r.code);
            if cs.by_code.contains_key(&key) {
                continue;
            }
            cs.by_code.insert(key, cs.concepts.len() as u32);
            cs.concepts.push(Concept {
                code: r.code,
                display: r.display,
                definition: r.definition,
                inactive: r.inactive,
                properties: r.properties.and_then(|p| serde_json::from_str(&p).ok()),
                designations: r.designations.and_then(|d| serde_json::from_str(&d).ok()),
            });
        }
        cs.parents = vec![Vec::new(); cs.concepts.len()];
        cs.children = vec![Vec::new(); cs.concepts.len()];
        for l in links {
            let (Some(c), Some(p)) = (cs.index(&l.child), cs.index(&l.parent)) else {
                continue;
            };
            if c != p && !cs.parents[c as usize].contains(&p) {
                cs.parents[c as usize].push(p);
                cs.children[p as usize].push(c);
            }
        }
        cs
    }

    fn key(&self, code: &str) -> String {
        match self.case_sensitive {
            true => code.to_string(),
            false => code.to_lowercase(),
        }
    }

    fn index(&self, code: &str) -> Option<u32> {
        match self.case_sensitive {
            true => self.by_code.get(code).copied(),
            false => self.by_code.get(&code.to_lowercase()).copied(),
        }
    }

    pub fn len(&self) -> usize {
        self.concepts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.concepts.is_empty()
    }

    /// True when the system's concepts are all here (`content` complete): a code it does not
    /// know is then not a code of the system.
    pub fn is_complete(&self) -> bool {
        self.content == "complete"
    }

    pub fn concept(&self, code: &str) -> Option<&Concept> {
        self.index(code).map(|i| &self.concepts[i as usize])
    }

    pub fn concepts(&self) -> impl Iterator<Item = &Concept> {
        self.concepts.iter()
    }

    pub fn parents_of(&self, code: &str) -> Vec<&Concept> {
        self.related(code, &self.parents)
    }

    pub fn children_of(&self, code: &str) -> Vec<&Concept> {
        self.related(code, &self.children)
    }

    fn related(&self, code: &str, edges: &[Vec<u32>]) -> Vec<&Concept> {
        self.index(code)
            .map(|i| {
                edges[i as usize]
                    .iter()
                    .map(|j| &self.concepts[*j as usize])
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every concept below `code` (not `code` itself), each once, whatever cycles a badly made
    /// hierarchy has.
    pub fn descendants(&self, code: &str) -> Vec<&Concept> {
        self.walk(code, &self.children)
    }

    pub fn ancestors(&self, code: &str) -> Vec<&Concept> {
        self.walk(code, &self.parents)
    }

    fn walk(&self, code: &str, edges: &[Vec<u32>]) -> Vec<&Concept> {
        let Some(start) = self.index(code) else {
            return Vec::new();
        };
        let mut seen = HashSet::from([start]);
        let mut queue = VecDeque::from([start]);
        let mut out = Vec::new();
        while let Some(i) = queue.pop_front() {
            for j in &edges[i as usize] {
                if seen.insert(*j) {
                    out.push(&self.concepts[*j as usize]);
                    queue.push_back(*j);
                }
            }
        }
        out
    }

    /// Whether `a` subsumes `b`, the other way, both or neither (None when either is unknown).
    pub fn subsumes(&self, a: &str, b: &str) -> Option<Subsumption> {
        let (ia, ib) = (self.index(a)?, self.index(b)?);
        if ia == ib {
            return Some(Subsumption::Equivalent);
        }
        let below = |top: &str, code: &str| self.ancestors(code).iter().any(|c| c.code == top);
        let (a, b) = (
            &self.concepts[ia as usize].code,
            &self.concepts[ib as usize].code,
        );
        Some(match (below(a, b), below(b, a)) {
            (true, true) => Subsumption::Equivalent,
            (true, false) => Subsumption::Subsumes,
            (false, true) => Subsumption::SubsumedBy,
            (false, false) => Subsumption::NotSubsumed,
        })
    }

    /// A concept's value of property `name` as text (codes, strings, booleans, numbers).
    pub fn property(&self, concept: &Concept, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        if name == "parent" {
            return self
                .parents_of(&concept.code)
                .into_iter()
                .map(|c| c.code.clone())
                .collect();
        }
        if name == "child" {
            return self
                .children_of(&concept.code)
                .into_iter()
                .map(|c| c.code.clone())
                .collect();
        }
        if name == "inactive" {
            return vec![concept.inactive.to_string()];
        }
        for p in concept
            .properties
            .iter()
            .flat_map(|p| p.as_array())
            .flatten()
        {
            if p["code"] != name {
                continue;
            }
            if let Some(v) = property_text(p) {
                out.push(v);
            }
        }
        out
    }
}

/// A property entry's value as text, whatever its type.
/// The display in `language`: a designation in it, else one in a language it shares its base
/// with (`de` for `de-CH`, and `de-CH` for `de`), else `display`.
pub fn in_language<'a>(
    display: Option<&'a str>,
    designations: Option<&'a Value>,
    language: Option<&str>,
) -> Option<&'a str> {
    let Some(lang) = language else {
        return display;
    };
    fn base(l: &str) -> &str {
        l.split('-').next().unwrap_or(l)
    }
    let all = || {
        designations
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|d| d["value"].is_string())
    };
    let language_of = |d: &'a Value| d["language"].as_str().unwrap_or("");
    all()
        .find(|d| language_of(d).eq_ignore_ascii_case(lang))
        .or_else(|| all().find(|d| base(language_of(d)).eq_ignore_ascii_case(base(lang))))
        .and_then(|d| d["value"].as_str())
        .or(display)
}

pub fn property_text(p: &Value) -> Option<String> {
    let obj = p.as_object()?;
    obj.iter()
        .find(|(k, _)| k.starts_with("value"))
        .and_then(|(k, v)| match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::Object(o) if k == "valueCoding" => {
                o.get("code").and_then(Value::as_str).map(str::to_string)
            }
            _ => None,
        })
}

/// The rows a CodeSystem resource's concepts make: nesting and the `parent` (or `subsumedBy`)
/// property make the hierarchy; `inactive`, a `status` of retired or inactive, and
/// `deprecated` mark a concept inactive.
pub fn rows_of(
    system_id: &str,
    resource: &Value,
    limit: usize,
) -> Result<(Vec<ConceptRow>, Vec<ParentRow>), String> {
    let mut concepts = Vec::new();
    let mut parents = Vec::new();
    // (concept, its parent in the nesting); depth is bounded by the body's nesting limit
    let mut stack: Vec<(&Value, Option<String>)> = resource["concept"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .map(|c| (c, None))
        .collect();
    while let Some((c, up)) = stack.pop() {
        let Some(code) = c["code"].as_str() else {
            return Err("a concept has no code".into());
        };
        if concepts.len() == limit {
            return Err(format!(
                "more than {limit} concepts: load a code system this large with `emrsync terminology import`"
            ));
        }
        if let Some(up) = up {
            parents.push(ParentRow {
                system_id: system_id.to_string(),
                child: code.to_string(),
                parent: up,
            });
        }
        let props = c["property"].as_array();
        let mut inactive = false;
        for p in props.into_iter().flatten() {
            let value = property_text(p).unwrap_or_default();
            match p["code"].as_str().unwrap_or("") {
                "parent" | "subsumedBy" => parents.push(ParentRow {
                    system_id: system_id.to_string(),
                    child: code.to_string(),
                    parent: value,
                }),
                "inactive" | "deprecated" if value == "true" => inactive = true,
                "status" if value == "retired" || value == "inactive" => inactive = true,
                _ => {}
            }
        }
        let json = |v: &Value| match v.as_array() {
            Some(a) if !a.is_empty() => Some(v.to_string()),
            _ => None,
        };
        concepts.push(ConceptRow {
            system_id: system_id.to_string(),
            code: code.to_string(),
            position: concepts.len() as i64,
            display: c["display"].as_str().map(str::to_string),
            definition: c["definition"].as_str().map(str::to_string),
            inactive,
            properties: json(&c["property"]),
            designations: json(&c["designation"]),
        });
        for child in c["concept"].as_array().into_iter().flatten().rev() {
            stack.push((child, Some(code.to_string())));
        }
    }
    Ok((concepts, parents))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn system() -> CodeSystem {
        let resource = json!({
            "resourceType": "CodeSystem", "url": "http://example.org/cs", "content": "complete",
            "concept": [
                {"code": "A", "display": "Alpha", "concept": [
                    {"code": "A1", "display": "Alpha one", "concept": [{"code": "A1x"}]},
                    {"code": "A2", "property": [{"code": "status", "valueCode": "retired"}]}]},
                {"code": "B", "property": [{"code": "parent", "valueCode": "A1"}]}]
        });
        let (rows, links) = rows_of("cs", &resource, 100).unwrap();
        CodeSystem::build("cs", &resource, rows, links)
    }

    #[test]
    fn nesting_and_the_parent_property_make_one_hierarchy() {
        let cs = system();
        assert_eq!(cs.len(), 5);
        let below: HashSet<&str> = cs
            .descendants("A")
            .iter()
            .map(|c| c.code.as_str())
            .collect();
        assert_eq!(below, HashSet::from(["A1", "A2", "A1x", "B"]));
        assert_eq!(cs.subsumes("A", "B"), Some(Subsumption::Subsumes));
        assert_eq!(cs.subsumes("B", "A"), Some(Subsumption::SubsumedBy));
        assert_eq!(cs.subsumes("A2", "B"), Some(Subsumption::NotSubsumed));
        assert_eq!(cs.subsumes("A", "Z"), None);
        assert!(cs.concept("A2").unwrap().inactive);
        assert_eq!(cs.property(cs.concept("A1").unwrap(), "parent"), ["A"]);
    }

    #[test]
    fn a_cycle_in_a_hierarchy_ends() {
        let resource = json!({"resourceType": "CodeSystem", "concept": [
            {"code": "X", "property": [{"code": "parent", "valueCode": "Y"}]},
            {"code": "Y", "property": [{"code": "parent", "valueCode": "X"}]}]});
        let (rows, links) = rows_of("c", &resource, 10).unwrap();
        let cs = CodeSystem::build("c", &resource, rows, links);
        assert_eq!(cs.descendants("X").len(), 1);
        assert_eq!(cs.subsumes("X", "Y"), Some(Subsumption::Equivalent));
    }

    #[test]
    fn too_many_concepts_are_refused_with_the_way_to_load_them() {
        let concept: Vec<Value> = (0..11).map(|i| json!({"code": i.to_string()})).collect();
        let e = rows_of("c", &json!({"concept": concept}), 10).unwrap_err();
        assert!(e.contains("terminology import"), "{e}");
    }
}
