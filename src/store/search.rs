//! Running a search: typed clauses (`fhir::search::query`) become one SQL statement over the
//! current versions and the search index, with bound values only, on either backend.
//!
//! Each clause is `resource_id [NOT] IN (rows of its index table that match any value)`;
//! clauses are ANDed. Pages are cut by resource id (keyset): a page starts after the last id
//! of the one before, so rows written while a client pages never shift what it sees.

use super::db::DbConnection;
use super::error::StoreError;
use super::versions::{Method, Version};
use crate::fhir::search::date::DateRange;
use crate::fhir::search::index::is_stored_elsewhere;
use crate::fhir::search::query::{Clause, Predicate, Prefix, SystemMatch, UriMatch};
use crate::fhir::search::{ParamType, SearchParam};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Text};

/// A search of one resource type.
#[derive(Debug, Clone)]
pub struct SearchSpec<'a> {
    pub resource_type: &'a str,
    pub clauses: &'a [Clause],
    /// Page size.
    pub count: i64,
    /// Only ids after this one (the paging cursor).
    pub after_id: Option<&'a str>,
    /// Count all matches too.
    pub total: bool,
}

/// One page of matches, in id order.
#[derive(Debug)]
pub struct Page {
    pub versions: Vec<Version>,
    pub total: Option<i64>,
    /// More matches follow this page.
    pub more: bool,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
enum Bind {
    Text(String),
    Int(i64),
    Float(f64),
}

/// The values bound to a statement, with numbered placeholders (`$1` on PostgreSQL, `?1` on
/// SQLite) handed out as the SQL text is written.
struct Sql {
    binds: Vec<Bind>,
    pg: bool,
}

impl Sql {
    fn new(pg: bool) -> Sql {
        Sql {
            binds: Vec::new(),
            pg,
        }
    }

    /// Bind `b` and return its placeholder.
    fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        let n = self.binds.len();
        if self.pg {
            format!("${n}")
        } else {
            format!("?{n}")
        }
    }

    fn text(&mut self, v: &str) -> String {
        self.bind(Bind::Text(v.to_string()))
    }

    /// `column` starts with `prefix`, in a form each backend can answer from an index
    /// (GLOB on SQLite, whose LIKE ignores case; LIKE on PostgreSQL, text_pattern_ops index).
    fn starts_with(&mut self, column: &str, prefix: &str) -> String {
        if self.pg {
            let p = self.text(&format!("{}%", escape_like(prefix)));
            format!("{column} LIKE {p} ESCAPE '\\'")
        } else {
            let p = self.text(&format!("{}*", escape_glob(prefix)));
            format!("{column} GLOB {p}")
        }
    }

    fn contains(&mut self, column: &str, part: &str) -> String {
        if self.pg {
            let p = self.text(&format!("%{}%", escape_like(part)));
            format!("{column} LIKE {p} ESCAPE '\\'")
        } else {
            let p = self.text(&format!("*{}*", escape_glob(part)));
            format!("{column} GLOB {p}")
        }
    }
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn escape_glob(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '*' | '?' | '[' => format!("[{c}]"),
            c => c.to_string(),
        })
        .collect()
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    resource_type: String,
    #[diesel(sql_type = Text)]
    resource_id: String,
    #[diesel(sql_type = BigInt)]
    version_id: i64,
    #[diesel(sql_type = BigInt)]
    last_updated: i64,
    #[diesel(sql_type = Text)]
    method: String,
    #[diesel(sql_type = Bool)]
    deleted: bool,
    #[diesel(sql_type = Text)]
    content: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Run `spec`: one page of current, not deleted resources that match every clause.
pub fn search(conn: &mut DbConnection, spec: &SearchSpec) -> Result<Page, StoreError> {
    let pg = matches!(conn, DbConnection::Pg(_));
    let mut filter = Sql::new(pg);
    let rt = filter.text(spec.resource_type);
    let mut conditions = vec![
        format!("r.resource_type = {rt}"),
        "r.deleted = FALSE".into(),
    ];
    for clause in spec.clauses {
        conditions.push(clause_sql(&mut filter, &rt, clause));
    }
    let total = if spec.total {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM resources r WHERE {}",
            conditions.join(" AND ")
        );
        let counted: Vec<Count> = load(conn, &sql, &filter.binds)?;
        Some(counted.first().map(|c| c.n).unwrap_or(0))
    } else {
        None
    };
    let mut page = filter;
    if let Some(after) = spec.after_id {
        let p = page.text(after);
        conditions.push(format!("r.resource_id > {p}"));
    }
    let limit = page.bind(Bind::Int(spec.count + 1));
    let sql = format!(
        "SELECT v.seq, v.resource_type, v.resource_id, v.version_id, v.last_updated, v.method, \
         v.deleted, v.content FROM resources r JOIN resource_versions v \
         ON v.resource_type = r.resource_type AND v.resource_id = r.resource_id \
         AND v.version_id = r.version_id WHERE {} ORDER BY r.resource_id LIMIT {limit}",
        conditions.join(" AND ")
    );
    let mut rows: Vec<Row> = load(conn, &sql, &page.binds)?;
    let more = rows.len() as i64 > spec.count;
    rows.truncate(spec.count.max(0) as usize);
    let versions = rows
        .into_iter()
        .map(|r| Version {
            resource_type: r.resource_type,
            id: r.resource_id,
            version_id: r.version_id,
            last_updated: r.last_updated,
            method: Method::parse(&r.method),
            deleted: r.deleted,
            content: r.content.into(),
            seq: r.seq,
        })
        .collect();
    Ok(Page {
        versions,
        total,
        more,
    })
}

fn load<T>(conn: &mut DbConnection, sql: &str, binds: &[Bind]) -> Result<Vec<T>, StoreError>
where
    T: QueryableByName<diesel::sqlite::Sqlite> + QueryableByName<diesel::pg::Pg> + 'static,
{
    macro_rules! run {
        ($c:expr, $backend:ty) => {{
            let mut q = diesel::sql_query(sql).into_boxed::<$backend>();
            for b in binds {
                q = match b {
                    Bind::Text(s) => q.bind::<Text, _>(s.clone()),
                    Bind::Int(i) => q.bind::<BigInt, _>(*i),
                    Bind::Float(f) => q.bind::<Double, _>(*f),
                };
            }
            q.load::<T>($c)?
        }};
    }
    Ok(match conn {
        DbConnection::Sqlite(c) => run!(c, diesel::sqlite::Sqlite),
        DbConnection::Pg(c) => run!(c, diesel::pg::Pg),
    })
}

fn table_of(kind: ParamType) -> &'static str {
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

/// `r.resource_id [NOT] IN (...)` for one clause.
fn clause_sql(sql: &mut Sql, rt: &str, clause: &Clause) -> String {
    let param: &SearchParam = clause.param;
    if is_stored_elsewhere(&param.code) {
        return own_column_sql(sql, clause);
    }
    let table = table_of(param.kind);
    let p = sql.text(&param.code);
    let rows = |predicates: String| {
        format!(
            "SELECT s.resource_id FROM {table} s WHERE s.resource_type = {rt} AND s.param = {p}{predicates}"
        )
    };
    if let Some(missing) = clause.missing {
        let not = if missing { "NOT " } else { "" };
        return format!("r.resource_id {not}IN ({})", rows(String::new()));
    }
    let any: Vec<String> = clause
        .any_of
        .iter()
        .map(|pred| predicate_sql(sql, pred, "s.", param.kind))
        .collect();
    let not = if clause.negate { "NOT " } else { "" };
    format!(
        "r.resource_id {not}IN ({})",
        rows(format!(" AND (({}))", any.join(") OR (")))
    )
}

/// `_id` and `_lastUpdated`, answered from the `resources` row itself.
fn own_column_sql(sql: &mut Sql, clause: &Clause) -> String {
    if let Some(missing) = clause.missing {
        return if missing {
            "FALSE".into()
        } else {
            "TRUE".into()
        };
    }
    let any: Vec<String> = clause
        .any_of
        .iter()
        .map(|pred| match pred {
            Predicate::Token { code: Some(id), .. } => {
                let v = sql.text(id);
                format!("r.resource_id = {v}")
            }
            Predicate::Date { prefix, range } => {
                range_sql(sql, *prefix, *range, "r.last_updated", "r.last_updated")
            }
            _ => "FALSE".into(),
        })
        .collect();
    let not = if clause.negate { "NOT " } else { "" };
    format!("{not}(({}))", any.join(") OR ("))
}

/// The condition one value puts on an index row of a `kind` table (columns prefixed with `c`).
fn predicate_sql(sql: &mut Sql, pred: &Predicate, c: &str, kind: ParamType) -> String {
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
        Predicate::Composite { first, second } => {
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
            format!("({first_sql}) AND ({second_sql})")
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
fn range_sql(sql: &mut Sql, prefix: Prefix, r: DateRange, low: &str, high: &str) -> String {
    let mut b = |v: i64| sql.bind(Bind::Int(v));
    match prefix {
        Prefix::Eq => format!("{low} >= {} AND {high} <= {}", b(r.low), b(r.high)),
        Prefix::Ne => format!("NOT ({low} >= {} AND {high} <= {})", b(r.low), b(r.high)),
        Prefix::Gt => format!("{high} > {}", b(r.high)),
        Prefix::Lt => format!("{low} < {}", b(r.low)),
        Prefix::Ge => format!(
            "({high} > {} OR ({low} >= {} AND {high} <= {}))",
            b(r.high),
            b(r.low),
            b(r.high)
        ),
        Prefix::Le => format!(
            "({low} < {} OR ({low} >= {} AND {high} <= {}))",
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
