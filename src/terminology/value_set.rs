//! Value sets expanded: a ValueSet's `compose` (include and exclude, by concept list, by
//! filter, by other value sets) made into the list of codes it holds, which `$expand` pages and
//! filters by text, and `$validate-code` and the `:in` search modifiers look codes up in.

use super::code_system::CodeSystem;
use super::{MAX_EXPANSION_HELD, TermError, Terminology, canonical};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Value sets nested in one another at most (a deeper nesting is refused as a likely cycle).
const MAX_NESTING: usize = 32;

#[derive(Debug, Clone)]
pub struct Contained {
    pub system: Arc<str>,
    pub version: Arc<str>,
    pub code: String,
    pub display: Option<String>,
    pub inactive: bool,
    pub designations: Option<Value>,
    /// The display, lowercased, for the text filter.
    words: Box<str>,
}

impl Contained {
    fn of(system: &Arc<str>, version: &Arc<str>, c: &super::code_system::Concept) -> Contained {
        Contained::new(
            system,
            version,
            &c.code,
            c.display.clone(),
            c.inactive,
            c.designations.clone(),
        )
    }

    fn new(
        system: &Arc<str>,
        version: &Arc<str>,
        code: &str,
        display: Option<String>,
        inactive: bool,
        designations: Option<Value>,
    ) -> Contained {
        Contained {
            system: system.clone(),
            version: version.clone(),
            code: code.to_string(),
            words: display.as_deref().unwrap_or("").to_lowercase().into(),
            display,
            inactive,
            designations,
        }
    }

    /// The display in `language` where a designation gives one, else the display.
    pub fn display_in(&self, language: Option<&str>) -> Option<&str> {
        super::code_system::in_language(
            self.display.as_deref(),
            self.designations.as_ref(),
            language,
        )
    }

    /// True when every word of `terms` starts a word of the display, or the code is `terms`.
    fn matches(&self, terms: &[String], whole: &str) -> bool {
        if self.code.eq_ignore_ascii_case(whole) {
            return true;
        }
        terms.iter().all(|t| {
            self.words.match_indices(t.as_str()).any(|(i, _)| {
                i == 0
                    || !self.words[..i]
                        .chars()
                        .next_back()
                        .is_some_and(char::is_alphanumeric)
            })
        })
    }
}

/// Expansions of more concepts than this are filtered by text through an index of their
/// displays' words (built at the first filter); smaller ones are read through.
const SCAN_AT_MOST: usize = 5_000;

/// Every word start of every display of an expansion (as concept and byte offset), sorted by
/// the text from there on: the concepts with a word starting with `term` are one run of it,
/// found by two binary searches.
#[derive(Debug, Default)]
struct Words {
    starts: Vec<(u32, u32)>,
    /// Concepts by their lowercased code (a filter that is a code finds it).
    codes: HashMap<String, Vec<u32>>,
}

impl Words {
    fn build(contains: &[Contained]) -> Words {
        let mut starts = Vec::new();
        let mut codes: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, c) in contains.iter().enumerate() {
            let mut before_alnum = false;
            for (at, ch) in c.words.char_indices() {
                if !before_alnum {
                    starts.push((i as u32, at as u32));
                }
                before_alnum = ch.is_alphanumeric();
            }
            codes
                .entry(c.code.to_lowercase())
                .or_default()
                .push(i as u32);
        }
        let text = |&(i, at): &(u32, u32)| &contains[i as usize].words[at as usize..];
        starts.sort_unstable_by(|a, b| text(a).cmp(text(b)));
        Words { starts, codes }
    }

    /// The concepts with a word that starts with `term`, in expansion order.
    fn starting(&self, contains: &[Contained], term: &str) -> Vec<u32> {
        let text = |&(i, at): &(u32, u32)| &contains[i as usize].words[at as usize..];
        let from = self.starts.partition_point(|s| text(s) < term);
        let to = from + self.starts[from..].partition_point(|s| text(s).starts_with(term));
        let mut found: Vec<u32> = self.starts[from..to].iter().map(|s| s.0).collect();
        found.sort_unstable();
        found.dedup();
        found
    }
}

/// A value set's codes, in the order its definition gives them, each once.
#[derive(Debug, Default)]
pub struct Expansion {
    pub contains: Vec<Contained>,
    index: HashMap<(Arc<str>, String), usize>,
    /// The text filter's index, for a large expansion, built when first filtered.
    words: std::sync::OnceLock<Words>,
    /// The code systems (and versions) the expansion drew on, for `used-codesystem`.
    pub used: Vec<String>,
    /// What the definition asked for that could not be given (a listed code a complete code
    /// system does not have): said with the answer, never dropped in silence.
    pub warnings: Vec<String>,
}

/// What `$expand` asks of an expansion.
#[derive(Debug, Default, Clone)]
pub struct Asked {
    pub filter: Option<String>,
    pub offset: usize,
    pub count: Option<usize>,
    pub active_only: bool,
}

impl Expansion {
    pub fn len(&self) -> usize {
        self.contains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.contains.is_empty()
    }

    pub fn find(&self, system: &str, code: &str) -> Option<&Contained> {
        self.index
            .get(&(Arc::from(system), code.to_string()))
            .map(|i| &self.contains[*i])
    }

    /// The codes of `system` with this code in any system (a code asked without its system).
    pub fn find_code(&self, code: &str) -> Vec<&Contained> {
        self.contains.iter().filter(|c| c.code == code).collect()
    }

    /// The concepts `asked` selects: how many in all, and the page of them.
    pub fn select(&self, asked: &Asked) -> (usize, Vec<&Contained>) {
        let whole = asked.filter.as_deref().unwrap_or("").trim().to_lowercase();
        let terms: Vec<String> = whole.split_whitespace().map(str::to_string).collect();
        let wanted = |c: &&Contained| {
            (!asked.active_only || !c.inactive) && (terms.is_empty() || c.matches(&terms, &whole))
        };
        let mut total = 0;
        let mut page = Vec::new();
        let count = asked.count.unwrap_or(usize::MAX);
        let candidates: Box<dyn Iterator<Item = &Contained>> =
            match terms.is_empty() || self.contains.len() <= SCAN_AT_MOST {
                true => Box::new(self.contains.iter()),
                false => {
                    // the concepts of the term with fewest, and those whose code is the filter;
                    // each still checked against every term below
                    let words = self.words.get_or_init(|| Words::build(&self.contains));
                    let mut found = terms
                        .iter()
                        .map(|t| words.starting(&self.contains, t))
                        .min_by_key(Vec::len)
                        .unwrap_or_default();
                    found.extend(words.codes.get(&whole).into_iter().flatten());
                    found.sort_unstable();
                    found.dedup();
                    Box::new(found.into_iter().map(|i| &self.contains[i as usize]))
                }
            };
        for c in candidates.filter(wanted) {
            if total >= asked.offset && page.len() < count {
                page.push(c);
            }
            total += 1;
        }
        (total, page)
    }

    fn add(&mut self, c: Contained) -> Result<(), TermError> {
        let key = (c.system.clone(), c.code.clone());
        if self.index.contains_key(&key) {
            return Ok(());
        }
        if self.contains.len() == MAX_EXPANSION_HELD {
            return Err(TermError::TooCostly(format!(
                "the value set has more than {MAX_EXPANSION_HELD} concepts: too many to expand"
            )));
        }
        self.index.insert(key, self.contains.len());
        self.contains.push(c);
        Ok(())
    }

    fn keys(&self) -> HashSet<(Arc<str>, String)> {
        self.index.keys().cloned().collect()
    }

    fn keep(self, keep: impl Fn(&Contained) -> bool) -> Expansion {
        let mut out = Expansion {
            used: self.used,
            warnings: self.warnings,
            ..Default::default()
        };
        for c in self.contains.into_iter().filter(|c| keep(c)) {
            out.index
                .insert((c.system.clone(), c.code.clone()), out.contains.len());
            out.contains.push(c);
        }
        out
    }

    fn note_used(&mut self, system: &str, version: &str) {
        let used = match version {
            "" => system.to_string(),
            v => format!("{system}|{v}"),
        };
        if !self.used.contains(&used) {
            self.used.push(used);
        }
    }
}

/// Expand `vs` (a ValueSet resource).
pub fn expand(term: &Terminology, vs: &Value) -> Result<Expansion, TermError> {
    let mut stack = Vec::new();
    expand_nested(term, vs, &mut stack)
}

fn expand_nested(
    term: &Terminology,
    vs: &Value,
    stack: &mut Vec<String>,
) -> Result<Expansion, TermError> {
    let url = vs["url"]
        .as_str()
        .unwrap_or("(a value set without url)")
        .to_string();
    if stack.contains(&url) {
        stack.push(url);
        return Err(TermError::Invalid(format!(
            "the value sets include one another in a cycle: {}",
            stack.join(" includes ")
        )));
    }
    if stack.len() == MAX_NESTING {
        return Err(TermError::Invalid(format!(
            "value sets nested more than {MAX_NESTING} deep (from {})",
            stack[0]
        )));
    }
    stack.push(url);
    let out = expand_one(term, vs, stack);
    stack.pop();
    out
}

fn expand_one(
    term: &Terminology,
    vs: &Value,
    stack: &mut Vec<String>,
) -> Result<Expansion, TermError> {
    let compose = &vs["compose"];
    if compose.is_null() {
        // a value set given expanded (and nothing else)
        let mut out = Expansion::default();
        let mut todo: Vec<&Value> = vs["expansion"]["contains"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        while let Some(c) = todo.pop() {
            todo.extend(c["contains"].as_array().into_iter().flatten());
            let (Some(system), Some(code)) = (c["system"].as_str(), c["code"].as_str()) else {
                continue;
            };
            let system: Arc<str> = system.into();
            let version: Arc<str> = c["version"].as_str().unwrap_or("").into();
            out.add(Contained::new(
                &system,
                &version,
                code,
                c["display"].as_str().map(str::to_string),
                c["inactive"].as_bool().unwrap_or(false),
                None,
            ))?;
        }
        return Ok(out);
    }
    let mut out = Expansion::default();
    for inc in compose["include"].as_array().into_iter().flatten() {
        let part = include(term, inc, stack)?;
        merge_notes(&mut out, &part);
        for c in part.contains {
            out.add(c)?;
        }
    }
    let mut excluded = HashSet::new();
    for exc in compose["exclude"].as_array().into_iter().flatten() {
        let part = include(term, exc, stack)?;
        excluded.extend(part.keys());
    }
    let with_inactive = compose["inactive"].as_bool().unwrap_or(true);
    Ok(out.keep(|c| {
        !excluded.contains(&(c.system.clone(), c.code.clone())) && (with_inactive || !c.inactive)
    }))
}

fn merge_notes(out: &mut Expansion, part: &Expansion) {
    for u in &part.used {
        if !out.used.contains(u) {
            out.used.push(u.clone());
        }
    }
    out.warnings.extend(part.warnings.iter().cloned());
}

/// One `include` (or `exclude`): its system's concepts (all, listed or filtered), intersected
/// with each value set it names.
fn include(
    term: &Terminology,
    inc: &Value,
    stack: &mut Vec<String>,
) -> Result<Expansion, TermError> {
    let mut sets = Vec::new();
    for nested in inc["valueSet"].as_array().into_iter().flatten() {
        let Some(nested) = nested.as_str() else {
            continue;
        };
        let (url, version) = canonical(nested);
        let vs = term.value_set(url, version)?.ok_or_else(|| {
            TermError::NotFound(format!(
                "the value set {nested} (included by {}) is not known to this server",
                stack.last().map(String::as_str).unwrap_or("?")
            ))
        })?;
        sets.push(expand_nested(term, &vs, stack)?);
    }
    let mut base = match inc["system"].as_str() {
        Some(system) => Some(from_system(term, system, inc)?),
        None => None,
    };
    if base.is_none() && sets.is_empty() {
        return Err(TermError::Invalid(
            "an include names neither a system nor a value set".into(),
        ));
    }
    let mut acc = match base.take() {
        Some(b) => b,
        None => sets.remove(0),
    };
    for s in &sets {
        merge_notes(&mut acc, s);
        let keys = s.keys();
        acc = acc.keep(|c| keys.contains(&(c.system.clone(), c.code.clone())));
    }
    Ok(acc)
}

fn from_system(term: &Terminology, system: &str, inc: &Value) -> Result<Expansion, TermError> {
    let version = inc["version"].as_str();
    let cs = term.code_system(system, version)?;
    let mut out = Expansion::default();
    let sys: Arc<str> = system.into();
    let listed = inc["concept"].as_array().filter(|c| !c.is_empty());
    if let Some(listed) = listed {
        let ver: Arc<str> = cs
            .as_ref()
            .map(|c| c.version.as_str())
            .or(version)
            .unwrap_or("")
            .into();
        out.note_used(system, &ver);
        for item in listed {
            let Some(code) = item["code"].as_str() else {
                continue;
            };
            let display = item["display"].as_str().map(str::to_string);
            match cs.as_ref().and_then(|cs| cs.concept(code)) {
                Some(c) => {
                    let mut found = Contained::of(&sys, &ver, c);
                    if display.is_some() {
                        found.words = display.as_deref().unwrap_or("").to_lowercase().into();
                        found.display = display;
                    }
                    out.add(found)?;
                }
                None if cs.as_ref().is_some_and(|cs| cs.is_complete()) => out.warnings.push(format!(
                    "the value set lists the code {code}, which the code system {system} does not have"
                )),
                // a system this server does not hold whole: the value set's word is taken
                None => out.add(Contained::new(&sys, &ver, code, display, false, None))?,
            }
        }
        return Ok(out);
    }
    let cs = cs.ok_or_else(|| {
        TermError::NotFound(format!(
            "the code system {system}{} is not known to this server, so a value set taking all or part of it by filter cannot be expanded",
            version.map(|v| format!(" (version {v})")).unwrap_or_default()
        ))
    })?;
    let ver: Arc<str> = cs.version.as_str().into();
    out.note_used(system, &ver);
    let mut chosen: Option<HashSet<&str>> = None;
    for f in inc["filter"].as_array().into_iter().flatten() {
        let these = filter(&cs, f)?;
        chosen = Some(match chosen {
            None => these,
            Some(before) => before.intersection(&these).copied().collect(),
        });
    }
    for c in cs.concepts() {
        if chosen.as_ref().is_none_or(|s| s.contains(c.code.as_str())) {
            out.add(Contained::of(&sys, &ver, c))?;
        }
    }
    Ok(out)
}

/// The codes of `cs` one filter (`property`, `op`, `value`) selects.
fn filter<'a>(cs: &'a CodeSystem, f: &Value) -> Result<HashSet<&'a str>, TermError> {
    let property = f["property"].as_str().unwrap_or("");
    let op = f["op"].as_str().unwrap_or("");
    let value = f["value"].as_str().unwrap_or("");
    let hierarchy = matches!(property, "concept" | "code" | "parent" | "child");
    let known = |code: &str| {
        cs.concept(code).ok_or_else(|| {
            TermError::Invalid(format!(
                "filter {property} {op} {value}: {value} is not a code of {}",
                cs.url
            ))
        })
    };
    let codes = |v: Vec<&'a super::code_system::Concept>| -> HashSet<&'a str> {
        v.into_iter().map(|c| c.code.as_str()).collect()
    };
    Ok(match (op, hierarchy) {
        ("is-a", true) => {
            let top = known(value)?;
            let mut s = codes(cs.descendants(value));
            s.insert(top.code.as_str());
            s
        }
        ("descendent-of", true) => {
            known(value)?;
            codes(cs.descendants(value))
        }
        ("is-not-a", true) => {
            known(value)?;
            let mut below = codes(cs.descendants(value));
            below.insert(value);
            cs.concepts()
                .map(|c| c.code.as_str())
                .filter(|c| !below.contains(c))
                .collect()
        }
        ("generalizes", true) => {
            let top = known(value)?;
            let mut s = codes(cs.ancestors(value));
            s.insert(top.code.as_str());
            s
        }
        ("=", true) => cs
            .concept(value)
            .map(|c| c.code.as_str())
            .into_iter()
            .collect(),
        ("in", true) | ("not-in", true) => {
            let listed: HashSet<&str> = value.split(',').map(str::trim).collect();
            cs.concepts()
                .map(|c| c.code.as_str())
                .filter(|c| listed.contains(c) == (op == "in"))
                .collect()
        }
        ("regex", _) => {
            let re = regex::RegexBuilder::new(&format!("^(?:{value})$"))
                .size_limit(1 << 20)
                .build()
                .map_err(|e| TermError::Invalid(format!("filter regex {value}: {e}")))?;
            cs.concepts()
                .filter(|c| match property {
                    "code" | "concept" => re.is_match(&c.code),
                    "display" => c.display.as_deref().is_some_and(|d| re.is_match(d)),
                    p => cs.property(c, p).iter().any(|v| re.is_match(v)),
                })
                .map(|c| c.code.as_str())
                .collect()
        }
        ("=", false) | ("in", false) | ("not-in", false) => {
            let listed: HashSet<&str> = match op {
                "=" => HashSet::from([value]),
                _ => value.split(',').map(str::trim).collect(),
            };
            cs.concepts()
                .filter(|c| {
                    let has = cs
                        .property(c, property)
                        .iter()
                        .any(|v| listed.contains(v.as_str()));
                    has == (op != "not-in")
                })
                .map(|c| c.code.as_str())
                .collect()
        }
        ("exists", _) => {
            let wanted = value != "false";
            cs.concepts()
                .filter(|c| cs.property(c, property).is_empty() != wanted)
                .map(|c| c.code.as_str())
                .collect()
        }
        _ => {
            return Err(TermError::Invalid(format!(
                "filter {property} {op} {value}: not a filter this server applies (is-a, descendent-of, is-not-a, generalizes, =, in, not-in, regex, exists)"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expansion(n: usize) -> Expansion {
        let (system, version): (Arc<str>, Arc<str>) = (Arc::from("http://x"), Arc::from(""));
        let mut e = Expansion::default();
        for i in 0..n {
            let display = format!(
                "{} of the [{}] type {i}",
                ["Glucose", "Sodium-ion", "pH"][i % 3],
                ["serum", "urine"][i % 2]
            );
            e.add(Contained::new(
                &system,
                &version,
                &format!("C{i}"),
                Some(display),
                i % 7 == 0,
                None,
            ))
            .unwrap();
        }
        e
    }

    /// Through the index (a large expansion) or read through (a small one), a text filter
    /// selects the same concepts in the same order.
    #[test]
    fn the_word_index_finds_what_reading_through_finds() {
        let big = expansion(SCAN_AT_MOST * 2);
        for filter in [
            "gluc",
            "gluc ser",
            "ion",
            "sodium-ion ur",
            "[urine",
            "c17",
            "type 1",
            "ph of",
            "zzz",
            "of the",
        ] {
            for active_only in [false, true] {
                let asked = Asked {
                    filter: Some(filter.to_string()),
                    active_only,
                    count: Some(50),
                    offset: 3,
                };
                let (total, page) = big.select(&asked);
                let whole = filter.to_lowercase();
                let terms: Vec<String> = whole.split_whitespace().map(str::to_string).collect();
                let scanned: Vec<&Contained> = big
                    .contains
                    .iter()
                    .filter(|c| (!active_only || !c.inactive) && c.matches(&terms, &whole))
                    .collect();
                assert_eq!(total, scanned.len(), "{filter}");
                let codes = |v: &[&Contained]| v.iter().map(|c| c.code.clone()).collect::<Vec<_>>();
                let expected: Vec<&Contained> = scanned.into_iter().skip(3).take(50).collect();
                assert_eq!(codes(&page), codes(&expected), "{filter}");
            }
        }
    }
}
