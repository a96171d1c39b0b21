//! A filter (`fhir::search::filter`) as an SQL condition on one `resources` row: plain
//! parameters test the row's own index rows, chains test the rows of what it points at,
//! `_has` the rows of what points at it, compartments its references to one patient.
//!
//! Every condition has the form `owner.resource_id [NOT] IN (SELECT ... )` over an index
//! table's lookup index, so the planner can either drive from the index or probe it per row.

use super::predicate::{predicate_sql, range_sql};
use super::sql::Sql;
use crate::fhir::search::ParamType;
use crate::fhir::search::filter::Filter;
use crate::fhir::search::index::is_stored_elsewhere;
use crate::fhir::search::query::{Clause, Predicate};

/// The `resources` row a condition is about: its alias and an SQL expression for its type
/// (a placeholder when the type is fixed, the row's own column in a search of all types).
pub struct Owner<'a> {
    pub row: &'a str,
    pub ty: &'a str,
}

impl Owner<'_> {
    /// Whether the row's type is one bound value (else the row's own column, `r.resource_type`).
    pub fn type_is_fixed(&self) -> bool {
        !self.ty.contains('.')
    }
}

pub fn table_of(kind: ParamType) -> &'static str {
    match kind {
        ParamType::String => "search_string",
        ParamType::Token => "search_token",
        ParamType::Reference => "search_reference",
        ParamType::Date => "search_date",
        ParamType::Number => "search_number",
        ParamType::Quantity => "search_quantity",
        ParamType::Uri => "search_uri",
        ParamType::Composite | ParamType::Special => "search_composite",
    }
}

/// The conditions `filters` put on `owner`. When `may_drive`, the filter likely to match the
/// fewest rows is written as `id IN (index rows)`, from which the planner drives; the other
/// plain parameters are probed per candidate row (`EXISTS` on the owner's own index rows, a
/// primary-key range), so that no large list of ids is ever built just to be intersected.
pub fn filters_sql(
    sql: &mut Sql,
    owner: &Owner,
    filters: &[Filter],
    may_drive: bool,
) -> Vec<String> {
    let driver = if may_drive {
        filters
            .iter()
            .enumerate()
            .filter_map(|(i, f)| selectivity(f).map(|rank| (rank, i)))
            .min()
            .map(|(_, i)| i)
    } else {
        None
    };
    filters
        .iter()
        .enumerate()
        .map(|(i, f)| match f {
            Filter::Clause(c) if Some(i) != driver && !is_stored_elsewhere(&c.param.code) => {
                clause_probe(sql, owner, c)
            }
            _ => filter_sql(sql, owner, f),
        })
        .collect()
}

/// The index rows of the filter `filters_sql` would let drive (a plain parameter only), to
/// count how many resources it matches at most.
pub fn driver_rows(sql: &mut Sql, ty: &str, filters: &[Filter]) -> Option<String> {
    let (_, i) = filters
        .iter()
        .enumerate()
        .filter_map(|(i, f)| selectivity(f).map(|rank| (rank, i)))
        .min()?;
    match &filters[i] {
        Filter::Clause(c) => Some(index_rows(sql, ty, c)),
        _ => None,
    }
}

/// How few rows a filter is likely to match, by the kind of its parameter (lower is fewer);
/// `None` for filters that cannot drive a search (`:not`, `:missing`, `_id` is a key lookup).
fn selectivity(filter: &Filter) -> Option<u8> {
    match filter {
        Filter::Clause(c) if !filter.needs_only_index() || is_stored_elsewhere(&c.param.code) => {
            None
        }
        Filter::Clause(c) => Some(match c.param.kind {
            ParamType::Reference => 0,
            ParamType::Token if c.param.code.contains("identifier") => 1,
            ParamType::String => 2,
            ParamType::Token | ParamType::Uri | ParamType::Composite => 3,
            ParamType::Number | ParamType::Quantity => 5,
            _ => 6,
        }),
        Filter::Not(_) => None,
        _ => Some(2),
    }
}

/// `[NOT] EXISTS` over the owner's own index rows of the clause's parameter.
fn clause_probe(sql: &mut Sql, owner: &Owner, clause: &Clause) -> String {
    let kind = clause.param.kind;
    let table = table_of(kind);
    let s = sql.alias("e");
    let p = sql.text(&clause.param.code);
    let row = owner.row;
    let param = sql.no_index(&format!("{s}.param"));
    let head = format!(
        "SELECT 1 FROM {table} {s} WHERE {s}.resource_type = {row}.resource_type \
         AND {s}.resource_id = {row}.resource_id AND {param} = {p}"
    );
    match clause.missing {
        Some(true) => format!("NOT EXISTS ({head})"),
        Some(false) => format!("EXISTS ({head})"),
        None => {
            let not = if clause.negate { "NOT " } else { "" };
            format!(
                "{not}EXISTS ({head} AND {})",
                any_value_sql(sql, clause, &s)
            )
        }
    }
}

/// The condition `filter` puts on `owner`.
pub fn filter_sql(sql: &mut Sql, owner: &Owner, filter: &Filter) -> String {
    let id = format!("{}.resource_id", owner.row);
    match filter {
        Filter::Clause(clause) => clause_sql(sql, owner, clause),
        Filter::Text(query) => super::text::text_sql(sql, owner, query),
        Filter::Not(inner) => format!("NOT ({})", filter_sql(sql, owner, inner)),
        Filter::Chain { param, targets } => {
            let s = sql.alias("c");
            let p = sql.text(&param.code);
            let any: Vec<String> = targets
                .iter()
                .map(|(target, inner)| {
                    let t = sql.text(target);
                    let ids = ids_matching(sql, &t, inner);
                    format!("{s}.target_type = {t} AND {s}.target_id IN ({ids})")
                })
                .collect();
            format!(
                "{id} IN (SELECT {s}.resource_id FROM search_reference {s} \
                 WHERE {s}.resource_type = {ty} AND {s}.param = {p} AND (({any})))",
                ty = owner.ty,
                any = any.join(") OR ("),
            )
        }
        Filter::Has {
            source_type,
            param,
            inner,
        } => {
            let h = sql.alias("h");
            let src = sql.text(source_type);
            let p = sql.text(&param.code);
            let ids = ids_matching(sql, &src, inner);
            // read the references of the matching sources (primary key), not every reference
            // of that parameter (lookup index)
            let param = sql.no_index(&format!("{h}.param"));
            // (stored sources only: a contained resource's key has a '#', no id has)
            format!(
                "{id} IN (SELECT {h}.target_id FROM search_reference {h} \
                 WHERE {h}.resource_type = {src} AND {param} = {p} \
                 AND {h}.target_type = {ty} AND {h}.resource_id IN ({ids}) \
                 AND {h}.resource_id NOT LIKE '%#%')",
                ty = owner.ty
            )
        }
        Filter::And(parts) => {
            let all: Vec<String> = parts.iter().map(|p| filter_sql(sql, owner, p)).collect();
            format!("({})", all.join(" AND "))
        }
        Filter::Or(parts) if parts.is_empty() => "FALSE".into(),
        Filter::Or(parts) => {
            let any: Vec<String> = parts.iter().map(|p| filter_sql(sql, owner, p)).collect();
            format!("(({}))", any.join(") OR ("))
        }
        Filter::Compartment {
            patients,
            params,
            is_patient_type,
        } => {
            // `None`: any Patient (a Patient-level export), else those named
            let pid = patients.as_ref().map(|ps| {
                let pids: Vec<String> = ps.iter().map(|p| sql.text(p)).collect();
                pids.join(", ")
            });
            let mut any = Vec::new();
            if *is_patient_type {
                any.push(match &pid {
                    Some(pid) => format!("{id} IN ({pid})"),
                    None => "TRUE".into(),
                });
            }
            if !params.is_empty() {
                let s = sql.alias("m");
                let codes: Vec<String> = params.iter().map(|p| sql.text(&p.code)).collect();
                let patient_type = sql.text("Patient");
                let (ty, codes) = (owner.ty, codes.join(", "));
                any.push(match &pid {
                    Some(pid) => format!(
                        "{id} IN (SELECT {s}.resource_id FROM search_reference {s} \
                         WHERE {s}.resource_type = {ty} AND {s}.param IN ({codes}) \
                         AND {s}.target_type = {patient_type} AND {s}.target_id IN ({pid}))"
                    ),
                    // any patient's: looked up row by row on the index's key, as an export
                    // walks every resource of the type anyway
                    None => format!(
                        "EXISTS (SELECT 1 FROM search_reference {s} \
                         WHERE {s}.resource_type = {ty} AND {s}.resource_id = {id} \
                         AND {s}.param IN ({codes}) AND {s}.target_type = {patient_type})"
                    ),
                });
            }
            if any.is_empty() {
                "FALSE".into()
            } else {
                format!("(({}))", any.join(") OR ("))
            }
        }
    }
}

/// `SELECT resource_id` of the current resources of type `ty` that match `filter`: straight
/// from the index when the filter only keeps resources with index rows (deleted resources
/// have none), else from `resources`.
fn ids_matching(sql: &mut Sql, ty: &str, filter: &Filter) -> String {
    if let Filter::Clause(clause) = filter
        && filter.needs_only_index()
        && !is_stored_elsewhere(&clause.param.code)
    {
        return index_rows(sql, ty, clause);
    }
    let r = sql.alias("r");
    let cond = filter_sql(sql, &Owner { row: &r, ty }, filter);
    format!(
        "SELECT {r}.resource_id FROM resources {r} \
         WHERE {r}.resource_type = {ty} AND {r}.deleted = FALSE AND {cond}"
    )
}

/// `SELECT resource_id` of the index rows of `clause`'s parameter in type `ty` that match any
/// of its values (all of its rows with `:missing`).
fn index_rows(sql: &mut Sql, ty: &str, clause: &Clause) -> String {
    let kind = clause.param.kind;
    let table = table_of(kind);
    let s = sql.alias("s");
    let p = sql.text(&clause.param.code);
    let head = format!(
        "SELECT {s}.resource_id FROM {table} {s} WHERE {s}.resource_type = {ty} AND {s}.param = {p}"
    );
    if clause.missing.is_some() {
        return head;
    }
    format!("{head} AND {}", any_value_sql(sql, clause, &s))
}

/// The clause's values (ORed) as conditions on the index row aliased `alias`.
fn any_value_sql(sql: &mut Sql, clause: &Clause, alias: &str) -> String {
    let column_prefix = format!("{alias}.");
    let any: Vec<String> = clause
        .any_of
        .iter()
        .map(|pred| predicate_sql(sql, pred, &column_prefix, clause.param.kind))
        .collect();
    format!("(({}))", any.join(") OR ("))
}

/// `owner.resource_id [NOT] IN (index rows)` for one parameter.
fn clause_sql(sql: &mut Sql, owner: &Owner, clause: &Clause) -> String {
    if is_stored_elsewhere(&clause.param.code) {
        return own_column_sql(sql, owner, clause);
    }
    let not = match clause.missing {
        Some(true) => "NOT ",
        Some(false) => "",
        None if clause.negate => "NOT ",
        None => "",
    };
    let rows = index_rows(sql, owner.ty, clause);
    format!("{}.resource_id {not}IN ({rows})", owner.row)
}

/// `_id` and `_lastUpdated`, answered from the `resources` row itself.
fn own_column_sql(sql: &mut Sql, owner: &Owner, clause: &Clause) -> String {
    if let Some(missing) = clause.missing {
        return if missing { "FALSE" } else { "TRUE" }.into();
    }
    let row = owner.row;
    let any: Vec<String> = clause
        .any_of
        .iter()
        .map(|pred| match pred {
            Predicate::Token { code: Some(id), .. } => {
                let v = sql.text(id);
                format!("{row}.resource_id = {v}")
            }
            Predicate::Date { prefix, range } => range_sql(
                sql,
                *prefix,
                *range,
                &format!("{row}.last_updated"),
                &format!("{row}.last_updated"),
            ),
            _ => "FALSE".into(),
        })
        .collect();
    let not = if clause.negate { "NOT " } else { "" };
    format!("{not}(({}))", any.join(") OR ("))
}
