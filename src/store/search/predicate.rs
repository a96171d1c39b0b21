//! The condition one search value puts on a row of its kind's index table: the spec's
//! matching rules for strings, tokens, references, date ranges, numbers and quantities, uris
//! and composites, as SQL over bound values.

use super::sql::{Bind, Sql};
use crate::fhir::search::ParamType;
use crate::fhir::search::date::DateRange;
use crate::fhir::search::query::{Predicate, Prefix, SystemMatch, UriMatch};

/// The condition one value puts on an index row of a `kind` table (columns prefixed with `c`).
pub fn predicate_sql(sql: &mut Sql, pred: &Predicate, c: &str, kind: ParamType) -> String {
    match pred {
        Predicate::String {
            value, exact: true, ..
        } => {
            let v = sql.text(value);
            format!("{c}exact = {v}")
        }
        Predicate::String {
            value,
            contains: true,
            ..
        } => sql.contains(&format!("{c}norm"), value),
        Predicate::String { value, .. } => sql.starts_with(&format!("{c}norm"), value),
        Predicate::Token { system, code } => token_sql(sql, system, code.as_deref(), c, ""),
        Predicate::TokenIn { system, codes } if codes.is_empty() => {
            let _ = system;
            "FALSE".into()
        }
        Predicate::TokenIn { system, codes } => {
            let s = sql.text(system);
            let list: Vec<String> = codes.iter().map(|code| sql.text(code)).collect();
            format!("{c}system = {s} AND {c}code IN ({})", list.join(", "))
        }
        // resolved into TokenIn before a search reaches the store (api::search)
        Predicate::Coded { .. } => "FALSE".into(),
        Predicate::TokenText(text) => {
            let start = sql.starts_with(&format!("{c}text"), text);
            let word = sql.contains(&format!("{c}text"), &format!(" {text}"));
            format!("{start} OR {word}")
        }
        Predicate::Reference {
            target_type,
            id,
            url,
        } => {
            let mut parts = Vec::new();
            if let Some(t) = target_type {
                let v = sql.text(t);
                parts.push(format!("{c}target_type = {v}"));
            }
            if let Some(id) = id {
                let v = sql.text(id);
                parts.push(format!("{c}target_id = {v}"));
            }
            if let Some(u) = url {
                let v = sql.text(u);
                parts.push(format!("{c}url = {v}"));
            }
            parts.join(" AND ")
        }
        Predicate::Date { prefix, range } => range_sql(
            sql,
            *prefix,
            *range,
            &format!("{c}low"),
            &format!("{c}high"),
        ),
        Predicate::Number {
            prefix,
            value,
            low,
            high,
            system,
            code,
        } => {
            // search_number has one value column; quantities (and composites) a low and high
            let (lo_col, hi_col) = if kind == ParamType::Number {
                (format!("{c}value"), format!("{c}value"))
            } else {
                (format!("{c}low"), format!("{c}high"))
            };
            let mut cond = number_sql(sql, *prefix, *value, *low, *high, &lo_col, &hi_col);
            if let Some(s) = system {
                let v = sql.text(s);
                cond = format!("{cond} AND {c}system = {v}");
            }
            if let Some(code) = code {
                let (v1, v2) = (sql.text(code), sql.text(code));
                cond = format!("{cond} AND ({c}code = {v1} OR {c}unit = {v2})");
            }
            cond
        }
        Predicate::Uri { value, kind } => match kind {
            UriMatch::Exact => {
                let v = sql.text(value);
                format!("{c}value = {v}")
            }
            UriMatch::Below => sql.starts_with(&format!("{c}value"), value),
            UriMatch::Above => {
                let v = sql.text(value);
                format!("substr({v}, 1, length({c}value)) = {c}value")
            }
        },
        Predicate::Composite {
            first,
            second,
            third,
        } => {
            let first_sql = match first.as_ref() {
                Predicate::Token { system, code } => {
                    token_sql(sql, system, code.as_deref(), c, "1")
                }
                _ => "FALSE".into(),
            };
            let second_sql = match second.as_ref() {
                Predicate::Token { system, code } => {
                    token_sql(sql, system, code.as_deref(), c, "2")
                }
                Predicate::Date { prefix, range } => range_sql(
                    sql,
                    *prefix,
                    *range,
                    &format!("{c}date_low"),
                    &format!("{c}date_high"),
                ),
                Predicate::String { value, .. } => sql.starts_with(&format!("{c}text"), value),
                Predicate::Number {
                    prefix,
                    value,
                    low,
                    high,
                    ..
                } => number_sql(
                    sql,
                    *prefix,
                    *value,
                    *low,
                    *high,
                    &format!("{c}low"),
                    &format!("{c}high"),
                ),
                _ => "FALSE".into(),
            };
            let third_sql = match third.as_deref() {
                None => "TRUE".into(),
                Some(Predicate::Number {
                    prefix,
                    value,
                    low,
                    high,
                    ..
                }) => number_sql(
                    sql,
                    *prefix,
                    *value,
                    *low,
                    *high,
                    &format!("{c}value3"),
                    &format!("{c}value3"),
                ),
                Some(_) => "FALSE".into(),
            };
            format!("({first_sql}) AND ({second_sql}) AND ({third_sql})")
        }
    }
}

fn token_sql(
    sql: &mut Sql,
    system: &SystemMatch,
    code: Option<&str>,
    c: &str,
    suffix: &str,
) -> String {
    let mut parts = Vec::new();
    match system {
        SystemMatch::Any => {}
        SystemMatch::None => parts.push(format!("{c}system{suffix} IS NULL")),
        SystemMatch::Is(s) => {
            let v = sql.text(s);
            parts.push(format!("{c}system{suffix} = {v}"));
        }
    }
    if let Some(code) = code {
        let v = sql.text(code);
        parts.push(format!("{c}code{suffix} = {v}"));
    }
    if parts.is_empty() {
        parts.push("TRUE".into());
    }
    parts.join(" AND ")
}

/// The spec's date semantics: the target's range [low, high] against the search value's.
pub fn range_sql(sql: &mut Sql, prefix: Prefix, r: DateRange, low: &str, high: &str) -> String {
    let mut b = |v: i64| sql.bind(Bind::Int(v));
    match prefix {
        Prefix::Eq => format!("{low} >= {} AND {high} <= {}", b(r.low), b(r.high)),
        Prefix::Ne => format!("NOT ({low} >= {} AND {high} <= {})", b(r.low), b(r.high)),
        Prefix::Gt => format!("{high} > {}", b(r.high)),
        Prefix::Lt => format!("{low} < {}", b(r.low)),
        // each begins with a condition both branches imply, which an index on the column answers
        Prefix::Ge => format!(
            "{high} >= {} AND ({high} > {} OR ({low} >= {} AND {high} <= {}))",
            b(r.low),
            b(r.high),
            b(r.low),
            b(r.high)
        ),
        Prefix::Le => format!(
            "{low} <= {} AND ({low} < {} OR ({low} >= {} AND {high} <= {}))",
            b(r.high),
            b(r.low),
            b(r.low),
            b(r.high)
        ),
        Prefix::Sa => format!("{low} > {}", b(r.high)),
        Prefix::Eb => format!("{high} < {}", b(r.low)),
        Prefix::Ap => {
            // within 10% of the distance between now and the value, either side
            let now = crate::fhir::resource::now_micros();
            let slack = ((now - r.low).abs() / 10).max(86_400_000_000);
            format!(
                "{high} >= {} AND {low} <= {}",
                b(r.low - slack),
                b(r.high + slack)
            )
        }
    }
}

/// Number and quantity semantics over a target range [lo, hi] (a point has lo = hi).
fn number_sql(
    sql: &mut Sql,
    prefix: Prefix,
    value: f64,
    low: f64,
    high: f64,
    lo: &str,
    hi: &str,
) -> String {
    let mut b = |v: f64| sql.bind(Bind::Float(v));
    match prefix {
        Prefix::Eq => format!("{lo} >= {} AND {hi} < {}", b(low), b(high)),
        Prefix::Ne => format!("NOT ({lo} >= {} AND {hi} < {})", b(low), b(high)),
        Prefix::Gt | Prefix::Sa => format!("{lo} > {}", b(value)),
        Prefix::Lt | Prefix::Eb => format!("{hi} < {}", b(value)),
        Prefix::Ge => format!("{lo} >= {}", b(value)),
        Prefix::Le => format!("{hi} <= {}", b(value)),
        Prefix::Ap => {
            let slack = (value * 0.1).abs();
            format!(
                "{lo} >= {} AND {hi} <= {}",
                b(value - slack),
                b(value + slack)
            )
        }
    }
}
