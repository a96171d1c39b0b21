//! ConceptMaps indexed for `$translate` and for code normalisation: from a source system's
//! code to its targets (and back, for `reverse`), with each map's equivalences and its rule
//! for codes it does not list (`group.unmapped`).

use super::canonical;
use serde_json::Value;
use std::collections::HashMap;

/// One target of a mapping, as the map states it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub system: Option<String>,
    pub version: Option<String>,
    pub code: Option<String>,
    pub display: Option<String>,
    pub equivalence: String,
    pub comment: Option<String>,
}

#[derive(Debug, Clone)]
struct Group {
    source: String,
    target: Option<String>,
    target_version: Option<String>,
    /// source code -> its targets
    forward: HashMap<String, Vec<Target>>,
    /// target code -> the source codes mapped to it (as Targets in the source system)
    backward: HashMap<String, Vec<Target>>,
    unmapped: Option<Unmapped>,
}

#[derive(Debug, Clone)]
enum Unmapped {
    /// The source code itself, in the target system.
    Provided,
    Fixed {
        code: String,
        display: Option<String>,
    },
    OtherMap(String),
}

#[derive(Debug, Clone)]
struct Map {
    url: String,
    version: Option<String>,
    source: Option<String>,
    target: Option<String>,
    groups: Vec<Group>,
}

/// A translation found, with the map that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub target: Target,
    pub source_map: String,
}

/// What `$translate` asks.
#[derive(Debug, Default, Clone)]
pub struct Question {
    pub url: Option<String>,
    pub map_version: Option<String>,
    pub system: Option<String>,
    pub code: String,
    /// The value set the code is in (the map's source scope).
    pub source: Option<String>,
    /// The value set (the map's target scope) to translate into.
    pub target: Option<String>,
    pub target_system: Option<String>,
    pub reverse: bool,
}

/// Every ConceptMap of the server.
#[derive(Debug, Default)]
pub struct Maps {
    maps: Vec<Map>,
}

/// Maps followed through `other-map` at most, before the chain is taken for a loop.
const MAX_CHAIN: usize = 8;

impl Maps {
    pub fn build(resources: &[Value]) -> Maps {
        let mut maps = Vec::new();
        for r in resources {
            let text = |v: &Value| v.as_str().map(str::to_string);
            let scope = |k: &str| {
                text(&r[format!("{k}Uri")])
                    .or_else(|| text(&r[format!("{k}Canonical")]))
                    .map(|u| canonical(&u).0.to_string())
            };
            let mut groups = Vec::new();
            for g in r["group"].as_array().into_iter().flatten() {
                let Some(source) = text(&g["source"]) else {
                    continue;
                };
                let target = text(&g["target"]);
                let mut group = Group {
                    source: source.clone(),
                    target: target.clone(),
                    target_version: text(&g["targetVersion"]),
                    forward: HashMap::new(),
                    backward: HashMap::new(),
                    unmapped: unmapped(&g["unmapped"]),
                };
                for e in g["element"].as_array().into_iter().flatten() {
                    let Some(code) = text(&e["code"]) else {
                        continue;
                    };
                    let targets = e["target"].as_array().cloned().unwrap_or_default();
                    if targets.is_empty() {
                        // an element with no target says the code has no match
                        group.forward.entry(code.clone()).or_default().push(Target {
                            system: None,
                            version: None,
                            code: None,
                            display: None,
                            equivalence: "unmatched".into(),
                            comment: None,
                        });
                    }
                    for t in targets {
                        let equivalence =
                            text(&t["equivalence"]).unwrap_or_else(|| "equivalent".into());
                        group.forward.entry(code.clone()).or_default().push(Target {
                            system: target.clone(),
                            version: text(&g["targetVersion"]),
                            code: text(&t["code"]),
                            display: text(&t["display"]),
                            equivalence: equivalence.clone(),
                            comment: text(&t["comment"]),
                        });
                        if let Some(tc) = text(&t["code"]) {
                            group.backward.entry(tc).or_default().push(Target {
                                system: Some(source.clone()),
                                version: text(&g["sourceVersion"]),
                                code: Some(code.clone()),
                                display: text(&e["display"]),
                                equivalence: reversed(&equivalence).into(),
                                comment: text(&t["comment"]),
                            });
                        }
                    }
                }
                groups.push(group);
            }
            if let Some(url) = text(&r["url"]) {
                maps.push(Map {
                    url,
                    version: text(&r["version"]),
                    source: scope("source"),
                    target: scope("target"),
                    groups,
                });
            }
        }
        Maps { maps }
    }

    pub fn knows(&self, url: &str) -> bool {
        self.maps.iter().any(|m| m.url == url)
    }

    /// The translations of `q`'s code, each map's in turn (empty when none applies).
    pub fn translate(&self, q: &Question) -> Vec<Match> {
        let mut out = Vec::new();
        for m in self.maps.iter().filter(|m| self.chosen(m, q)) {
            self.translate_with(m, q, &mut out, 0);
        }
        out
    }

    fn chosen(&self, m: &Map, q: &Question) -> bool {
        let (wanted_source, wanted_target) = match q.reverse {
            false => (&q.source, &q.target),
            true => (&q.target, &q.source),
        };
        q.url.as_ref().is_none_or(|u| *u == m.url)
            && q.map_version
                .as_ref()
                .is_none_or(|v| Some(v) == m.version.as_ref())
            && wanted_source
                .as_ref()
                .is_none_or(|s| Some(s) == m.source.as_ref())
            && wanted_target
                .as_ref()
                .is_none_or(|t| Some(t) == m.target.as_ref())
    }

    fn translate_with(&self, m: &Map, q: &Question, out: &mut Vec<Match>, depth: usize) {
        for g in &m.groups {
            let (from, to) = match q.reverse {
                false => (Some(&g.source), g.target.as_ref()),
                true => (g.target.as_ref(), Some(&g.source)),
            };
            if q.system.as_ref().is_some_and(|s| Some(s) != from) {
                continue;
            }
            if q.target_system.as_ref().is_some_and(|t| Some(t) != to) {
                continue;
            }
            let index = match q.reverse {
                false => &g.forward,
                true => &g.backward,
            };
            if let Some(targets) = index.get(&q.code) {
                out.extend(targets.iter().map(|t| Match {
                    target: t.clone(),
                    source_map: m.url.clone(),
                }));
                continue;
            }
            if q.reverse {
                continue;
            }
            match &g.unmapped {
                Some(Unmapped::Provided) => out.push(Match {
                    target: Target {
                        system: g.target.clone(),
                        version: g.target_version.clone(),
                        code: Some(q.code.clone()),
                        display: None,
                        equivalence: "equal".into(),
                        comment: None,
                    },
                    source_map: m.url.clone(),
                }),
                Some(Unmapped::Fixed { code, display }) => out.push(Match {
                    target: Target {
                        system: g.target.clone(),
                        version: g.target_version.clone(),
                        code: Some(code.clone()),
                        display: display.clone(),
                        equivalence: "wider".into(),
                        comment: None,
                    },
                    source_map: m.url.clone(),
                }),
                Some(Unmapped::OtherMap(url)) if depth < MAX_CHAIN => {
                    let (url, _) = canonical(url);
                    for other in self.maps.iter().filter(|o| o.url == url) {
                        self.translate_with(other, q, out, depth + 1);
                    }
                }
                _ => {}
            }
        }
    }
}

fn unmapped(u: &Value) -> Option<Unmapped> {
    match u["mode"].as_str()? {
        "provided" => Some(Unmapped::Provided),
        "fixed" => Some(Unmapped::Fixed {
            code: u["code"].as_str()?.to_string(),
            display: u["display"].as_str().map(str::to_string),
        }),
        "other-map" => Some(Unmapped::OtherMap(u["url"].as_str()?.to_string())),
        _ => None,
    }
}

/// An equivalence read the other way (`wider` one way is `narrower` back).
fn reversed(e: &str) -> &str {
    match e {
        "wider" => "narrower",
        "narrower" => "wider",
        "subsumes" => "specializes",
        "specializes" => "subsumes",
        other => other,
    }
}

/// True when an equivalence says the codes mean (about) the same: `$translate`'s `result`.
pub fn is_match(equivalence: &str) -> bool {
    !matches!(equivalence, "unmatched" | "disjoint")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn maps() -> Maps {
        Maps::build(&[json!({
            "resourceType": "ConceptMap", "url": "http://example.org/cm",
            "sourceUri": "http://example.org/vs-local", "targetUri": "http://example.org/vs-loinc",
            "group": [{
                "source": "http://lab.example.org/codes", "target": "http://loinc.org",
                "element": [
                    {"code": "GLU", "target": [{"code": "2345-7", "display": "Glucose", "equivalence": "equivalent"}]},
                    {"code": "K", "target": [{"code": "2823-3", "equivalence": "wider"}]},
                    {"code": "NONE", "target": []}],
                "unmapped": {"mode": "fixed", "code": "X-UNMAPPED"}
            }]
        })])
    }

    fn ask(code: &str) -> Question {
        Question {
            system: Some("http://lab.example.org/codes".into()),
            code: code.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_listed_code_translates_with_its_equivalence() {
        let m = maps().translate(&ask("GLU"));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].target.code.as_deref(), Some("2345-7"));
        assert_eq!(m[0].target.system.as_deref(), Some("http://loinc.org"));
        assert_eq!(m[0].source_map, "http://example.org/cm");
    }

    #[test]
    fn reverse_reads_the_map_back_with_the_equivalence_turned() {
        let q = Question {
            system: Some("http://loinc.org".into()),
            code: "2823-3".into(),
            reverse: true,
            ..Default::default()
        };
        let m = maps().translate(&q);
        assert_eq!(m[0].target.code.as_deref(), Some("K"));
        assert_eq!(m[0].target.equivalence, "narrower");
    }

    #[test]
    fn unlisted_codes_follow_the_unmapped_rule_and_empty_targets_say_unmatched() {
        let m = maps().translate(&ask("NA"));
        assert_eq!(m[0].target.code.as_deref(), Some("X-UNMAPPED"));
        let none = maps().translate(&ask("NONE"));
        assert_eq!(none[0].target.equivalence, "unmatched");
        assert!(!is_match(&none[0].target.equivalence));
        let other = Question {
            system: Some("http://elsewhere".into()),
            ..ask("GLU")
        };
        assert!(maps().translate(&other).is_empty());
    }
}
