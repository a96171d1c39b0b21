//! The token search modifiers that need terminology, resolved before the store runs a search:
//! `:in` and `:not-in` a value set (its expansion), `:below` and `:above` a code (the code and
//! its descendants, or ancestors, in its system's hierarchy). Each becomes a list of codes per
//! system that the store matches through its token index (`system = ? AND code IN (...)`),
//! never by reading resources.

use super::{TermError, Terminology, canonical};
use crate::fhir::search::filter::Filter;
use crate::fhir::search::query::{CodedOp, Predicate};
use std::collections::BTreeMap;

/// Codes one modifier may stand for: a larger set is refused with its size.
pub const MAX_CODES: usize = 10_000;

/// Resolve every `:in`, `:not-in`, `:below` and `:above` of `filter`.
pub fn resolve(t: &Terminology, filter: &mut Filter) -> Result<(), TermError> {
    if !filter.through_terminology() {
        return Ok(());
    }
    let mut failed = None;
    let _ = filter.for_each_clause(&mut |clause| {
        let mut resolved = Vec::new();
        for p in clause.any_of.drain(..) {
            match p {
                Predicate::Coded { op, value } => match codes(t, op, &value) {
                    Ok(sets) => resolved.extend(sets),
                    Err(e) => {
                        failed = Some(e);
                        return Err(String::new());
                    }
                },
                other => resolved.push(other),
            }
        }
        clause.any_of = resolved;
        Ok(())
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn codes(t: &Terminology, op: CodedOp, value: &str) -> Result<Vec<Predicate>, TermError> {
    let mut by_system: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match op {
        CodedOp::In => {
            let (url, version) = canonical(value);
            let expansion = t.expansion(url, version)?;
            if expansion.len() > MAX_CODES {
                return Err(TermError::TooCostly(format!(
                    ":in {value}: the value set has {} codes, more than the {MAX_CODES} a search takes",
                    expansion.len()
                )));
            }
            for c in &expansion.contains {
                by_system
                    .entry(c.system.to_string())
                    .or_default()
                    .push(c.code.clone());
            }
        }
        CodedOp::Below | CodedOp::Above => {
            let (system, code) = value.split_once('|').unwrap_or(("", value));
            let cs = t.code_system(system, None)?.ok_or_else(|| {
                TermError::NotFound(format!(
                    "the code system {system} is not known to this server"
                ))
            })?;
            let top = cs
                .concept(code)
                .ok_or_else(|| TermError::Invalid(format!("{code} is not a code of {system}")))?;
            let related = match op {
                CodedOp::Below => cs.descendants(code),
                _ => cs.ancestors(code),
            };
            if related.len() >= MAX_CODES {
                return Err(TermError::TooCostly(format!(
                    "{value}: {} codes, more than the {MAX_CODES} a search takes",
                    related.len() + 1
                )));
            }
            let list = by_system.entry(system.to_string()).or_default();
            list.push(top.code.clone());
            list.extend(related.into_iter().map(|c| c.code.clone()));
        }
    }
    Ok(by_system
        .into_iter()
        .map(|(system, codes)| Predicate::TokenIn { system, codes })
        .collect())
}
