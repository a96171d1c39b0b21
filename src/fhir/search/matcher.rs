//! A search clause tested on one resource in memory, by the rules the store's SQL applies to
//! its index rows (`store::search::predicate`): what a query-restricted SMART scope checks on
//! a resource read by id (its own version, not the current index), and what a Subscription's
//! criteria check on a change. The two must agree; `tests/api/smart.rs` compares them.

use super::ParamType;
use super::date::DateRange;
use super::index::{Entries, QuantityEntry, Second, TokenEntry, index_param};
use super::query::{Clause, Predicate, Prefix, SystemMatch, UriMatch};
use serde_json::Value;

/// Whether `resource` matches every one of `clauses`.
pub fn matches_all(resource: &Value, clauses: &[Clause]) -> bool {
    clauses.iter().all(|c| matches(resource, c))
}

/// Whether `resource` matches `clause` (any of its values; none of them with `:not`).
pub fn matches(resource: &Value, clause: &Clause) -> bool {
    matches_entries(&index_param(resource, clause.param), clause)
}

/// `matches`, given the resource's entries for the clause's parameter (computed once for
/// many clauses on the same parameter: many subscriptions filtering one change).
pub fn matches_entries(entries: &Entries, clause: &Clause) -> bool {
    match clause.missing {
        Some(missing) => entries.is_empty() == missing,
        None => {
            let any = clause
                .any_of
                .iter()
                .any(|p| entry_matches(entries, clause.param.kind, p));
            any != clause.negate
        }
    }
}

fn entry_matches(e: &Entries, kind: ParamType, pred: &Predicate) -> bool {
    match pred {
        Predicate::String {
            value,
            exact,
            contains,
        } => e.strings.iter().any(|s| {
            if *exact {
                s.exact == *value
            } else if *contains {
                s.norm.contains(value.as_str())
            } else {
                s.norm.starts_with(value.as_str())
            }
        }),
        Predicate::Token { system, code } => e.tokens.iter().any(|t| token(t, system, code)),
        Predicate::TokenIn { system, codes } => e.tokens.iter().any(|t| {
            t.system.as_deref() == Some(system.as_str())
                && t.code.as_ref().is_some_and(|c| codes.contains(c))
        }),
        // resolved before matching (and refused where it cannot be)
        Predicate::Coded { .. } => false,
        Predicate::TokenText(text) => e.tokens.iter().any(|t| {
            t.text
                .as_deref()
                .is_some_and(|x| x.starts_with(text.as_str()) || x.contains(&format!(" {text}")))
        }),
        Predicate::Reference {
            target_type,
            id,
            url,
        } => e.references.iter().any(|r| {
            target_type
                .as_ref()
                .is_none_or(|t| r.target_type.as_ref() == Some(t))
                && id.as_ref().is_none_or(|i| r.target_id.as_ref() == Some(i))
                && url.as_ref().is_none_or(|u| r.url.as_ref() == Some(u))
        }),
        Predicate::Date { prefix, range } => e
            .dates
            .iter()
            .any(|d| date(*prefix, *range, d.range.low, d.range.high)),
        Predicate::Number {
            prefix,
            value,
            low,
            high,
            system,
            code,
        } => {
            let n = Number {
                prefix: *prefix,
                value: *value,
                low: *low,
                high: *high,
            };
            if kind == ParamType::Number {
                e.numbers.iter().any(|x| n.matches(x.value, x.value))
            } else {
                e.quantities
                    .iter()
                    .any(|q| n.matches(q.low, q.high) && units(q, system, code))
            }
        }
        Predicate::Uri { value, kind } => e.uris.iter().any(|u| match kind {
            UriMatch::Exact => u.value == *value,
            UriMatch::Below => u.value.starts_with(value.as_str()),
            UriMatch::Above => value.starts_with(u.value.as_str()),
        }),
        Predicate::Composite {
            first,
            second,
            third,
        } => e.composites.iter().any(|c| {
            let Predicate::Token { system, code } = first.as_ref() else {
                return false;
            };
            let third_ok = match (third.as_deref(), c.third) {
                (None, _) => true,
                (
                    Some(Predicate::Number {
                        prefix,
                        value,
                        low,
                        high,
                        ..
                    }),
                    Some(v),
                ) => Number {
                    prefix: *prefix,
                    value: *value,
                    low: *low,
                    high: *high,
                }
                .matches(v, v),
                (Some(_), _) => false,
            };
            token(&c.first, system, code) && composite_second(&c.second, second) && third_ok
        }),
    }
}

fn token(t: &TokenEntry, system: &SystemMatch, code: &Option<String>) -> bool {
    let system_ok = match system {
        SystemMatch::Any => true,
        SystemMatch::None => t.system.is_none(),
        SystemMatch::Is(s) => t.system.as_ref() == Some(s),
    };
    system_ok && code.as_ref().is_none_or(|c| t.code.as_ref() == Some(c))
}

fn units(q: &QuantityEntry, system: &Option<String>, code: &Option<String>) -> bool {
    system.as_ref().is_none_or(|s| q.system.as_ref() == Some(s))
        && code
            .as_ref()
            .is_none_or(|c| q.code.as_ref() == Some(c) || q.unit.as_ref() == Some(c))
}

fn composite_second(second: &Second, pred: &Predicate) -> bool {
    match (second, pred) {
        (Second::Token(t), Predicate::Token { system, code }) => token(t, system, code),
        (Second::Date(d), Predicate::Date { prefix, range }) => {
            date(*prefix, *range, d.low, d.high)
        }
        (Second::String(s), Predicate::String { value, .. }) => s.norm.starts_with(value.as_str()),
        (
            Second::Quantity(q),
            Predicate::Number {
                prefix,
                value,
                low,
                high,
                ..
            },
        ) => Number {
            prefix: *prefix,
            value: *value,
            low: *low,
            high: *high,
        }
        .matches(q.low, q.high),
        _ => false,
    }
}

/// The spec's date semantics: the target's range [low, high] against the searched range `r`
/// (as `predicate::range_sql` writes them in SQL).
fn date(prefix: Prefix, r: DateRange, low: i64, high: i64) -> bool {
    let within = low >= r.low && high <= r.high;
    match prefix {
        Prefix::Eq => within,
        Prefix::Ne => !within,
        Prefix::Gt => high > r.high,
        Prefix::Lt => low < r.low,
        Prefix::Ge => high >= r.low && (high > r.high || within),
        Prefix::Le => low <= r.high && (low < r.low || within),
        Prefix::Sa => low > r.high,
        Prefix::Eb => high < r.low,
        Prefix::Ap => {
            let now = crate::fhir::resource::now_micros();
            let slack = ((now - r.low).abs() / 10).max(86_400_000_000);
            high >= r.low - slack && low <= r.high + slack
        }
    }
}

/// A number or quantity searched for, against a target range [lo, hi] (a point has lo = hi),
/// as `predicate::number_sql` writes it in SQL.
struct Number {
    prefix: Prefix,
    value: f64,
    low: f64,
    high: f64,
}

impl Number {
    fn matches(&self, lo: f64, hi: f64) -> bool {
        let v = self.value;
        match self.prefix {
            Prefix::Eq => lo >= self.low && hi < self.high,
            Prefix::Ne => !(lo >= self.low && hi < self.high),
            Prefix::Gt | Prefix::Sa => lo > v,
            Prefix::Lt | Prefix::Eb => hi < v,
            Prefix::Ge => lo >= v,
            Prefix::Le => hi <= v,
            Prefix::Ap => {
                let slack = (v * 0.1).abs();
                lo >= v - slack && hi <= v + slack
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::search::query::parse_clause;
    use serde_json::json;

    fn clause(rtype: &str, name: &str, value: &str) -> Clause {
        parse_clause(rtype, name, value).unwrap().unwrap()
    }

    #[test]
    fn clauses_match_a_resource_by_the_search_rules() {
        let obs = json!({
            "resourceType": "Observation", "id": "o1", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-03-05T10:00:00Z",
            "valueQuantity": {"value": 6.3, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}
        });
        let yes = [
            ("category", "laboratory"),
            (
                "category",
                "http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
            ),
            ("category", "vital-signs,laboratory"),
            ("code:text", "gluc"),
            ("subject", "Patient/p1"),
            ("patient", "p1"),
            ("date", "2024-03"),
            ("date", "ge2024-03-05"),
            ("value-quantity", "gt6|http://unitsofmeasure.org|mmol/L"),
            ("status:not", "amended"),
            ("_id", "o1"),
            ("code-value-quantity", "http://loinc.org|2345-7$6.3"),
        ];
        for (n, v) in yes {
            assert!(matches(&obs, &clause("Observation", n, v)), "{n}={v}");
        }
        let no = [
            ("category", "vital-signs"),
            ("category", "other-system|laboratory"),
            ("subject", "Patient/p2"),
            ("date", "lt2024"),
            ("value-quantity", "lt6"),
            ("status:not", "final"),
            ("encounter:missing", "false"),
            ("code-value-quantity", "http://loinc.org|2345-7$7"),
        ];
        for (n, v) in no {
            assert!(!matches(&obs, &clause("Observation", n, v)), "{n}={v}");
        }
        assert!(matches(
            &obs,
            &clause("Observation", "encounter:missing", "true")
        ));
    }
}
