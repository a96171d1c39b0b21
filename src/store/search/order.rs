//! The order of a search's results and where a page starts. Results are ordered by the `_sort`
//! keys, then by type and id, so that every position is unique; a page starts strictly after
//! (or, for a `previous` link, before) the position of a row the client has seen. Because a
//! position is a row's values and not an offset, writes made while a client pages through a
//! result never make it see a row twice or skip one that stayed put.

use super::filter::table_of;
use super::sql::{Bind, Sql};
use crate::fhir::search::index::{Entries, index};
use crate::fhir::search::{ParamType, SearchParam};
use crate::store::versions::Version;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One `_sort` key.
#[derive(Debug, Clone)]
pub struct SortKey {
    pub code: String,
    pub kind: SortKind,
    pub descending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKind {
    Id,
    LastUpdated,
    Index(ParamType),
}

impl SortKey {
    /// The key of `param`, or why it cannot be sorted by.
    pub fn of(param: &SearchParam, descending: bool) -> Result<SortKey, String> {
        let kind = match (param.code.as_str(), param.kind) {
            ("_id", _) => SortKind::Id,
            ("_lastUpdated", _) => SortKind::LastUpdated,
            (_, ParamType::Composite | ParamType::Special) => {
                return Err(format!(
                    "_sort: {} parameters such as '{}' have no order",
                    param.kind.as_str(),
                    param.code
                ));
            }
            (_, kind) => SortKind::Index(kind),
        };
        Ok(SortKey {
            code: param.code.clone(),
            kind,
            descending,
        })
    }

    fn is_text(&self) -> bool {
        !matches!(
            self.kind,
            SortKind::LastUpdated
                | SortKind::Index(ParamType::Date | ParamType::Number | ParamType::Quantity)
        )
    }

    /// The key of the `resources` row `row`: for a parameter with several values, the least
    /// one ascending and the greatest one descending (a date's start, or its end).
    pub fn sql(&self, sql: &mut Sql, row: &str) -> String {
        let kind = match self.kind {
            SortKind::Id => return format!("{row}.resource_id"),
            SortKind::LastUpdated => return format!("{row}.last_updated"),
            SortKind::Index(kind) => kind,
        };
        let k = sql.alias("k");
        let column = match (kind, self.descending) {
            (ParamType::Date | ParamType::Quantity, false) => format!("{k}.low"),
            (ParamType::Date | ParamType::Quantity, true) => format!("{k}.high"),
            (ParamType::String, _) => format!("{k}.norm"),
            (ParamType::Token, _) => format!("{k}.code"),
            (ParamType::Reference, _) => {
                format!("COALESCE({k}.target_type || '/' || {k}.target_id, {k}.url)")
            }
            _ => format!("{k}.value"),
        };
        let column = if self.is_text() {
            sql.bytewise(&column)
        } else {
            column
        };
        let aggregate = if self.descending { "MAX" } else { "MIN" };
        let p = sql.text(&self.code);
        // the row's own index rows: a primary-key range, never a scan of the lookup index
        let param = sql.no_index(&format!("{k}.param"));
        format!(
            "(SELECT {aggregate}({column}) FROM {table} {k} WHERE {k}.resource_type = {row}.resource_type \
             AND {k}.resource_id = {row}.resource_id AND {param} = {p})",
            table = table_of(kind)
        )
    }

    /// The same key computed from a version's content, as the index holds it.
    fn value_of(&self, version: &Version, entries: &Entries) -> Value {
        let pick = |values: Vec<Value>| -> Value {
            let best = if self.descending {
                values.into_iter().max_by(compare)
            } else {
                values.into_iter().min_by(compare)
            };
            best.unwrap_or(Value::Null)
        };
        let code = self.code.as_str();
        match self.kind {
            SortKind::Id => Value::from(version.id.clone()),
            SortKind::LastUpdated => Value::from(version.last_updated),
            SortKind::Index(ParamType::Date) => pick(
                entries
                    .dates
                    .iter()
                    .filter(|e| e.param == code)
                    .map(|e| {
                        Value::from(if self.descending {
                            e.range.high
                        } else {
                            e.range.low
                        })
                    })
                    .collect(),
            ),
            SortKind::Index(ParamType::Quantity) => pick(
                entries
                    .quantities
                    .iter()
                    .filter(|e| e.param == code)
                    .map(|e| Value::from(if self.descending { e.high } else { e.low }))
                    .collect(),
            ),
            SortKind::Index(ParamType::Number) => pick(
                entries
                    .numbers
                    .iter()
                    .filter(|e| e.param == code)
                    .map(|e| Value::from(e.value))
                    .collect(),
            ),
            SortKind::Index(ParamType::String) => pick(
                entries
                    .strings
                    .iter()
                    .filter(|e| e.param == code)
                    .map(|e| Value::from(e.norm.clone()))
                    .collect(),
            ),
            SortKind::Index(ParamType::Token) => pick(
                entries
                    .tokens
                    .iter()
                    .filter(|e| e.param == code)
                    .filter_map(|e| e.code.clone().map(Value::from))
                    .collect(),
            ),
            SortKind::Index(ParamType::Reference) => pick(
                entries
                    .references
                    .iter()
                    .filter(|e| e.param == code)
                    .filter_map(|e| match (&e.target_type, &e.target_id) {
                        (Some(t), Some(id)) => Some(Value::from(format!("{t}/{id}"))),
                        _ => e.url.clone().map(Value::from),
                    })
                    .collect(),
            ),
            SortKind::Index(ParamType::Uri) => pick(
                entries
                    .uris
                    .iter()
                    .filter(|e| e.param == code)
                    .map(|e| Value::from(e.value.clone()))
                    .collect(),
            ),
            SortKind::Index(_) => Value::Null,
        }
    }

    fn bind(&self, sql: &mut Sql, v: &Value) -> Option<String> {
        let b = match self.kind {
            SortKind::LastUpdated | SortKind::Index(ParamType::Date) => Bind::Int(v.as_i64()?),
            SortKind::Index(ParamType::Number | ParamType::Quantity) => Bind::Float(v.as_f64()?),
            _ => Bind::Text(v.as_str()?.to_string()),
        };
        Some(sql.bind(b))
    }
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.total_cmp(&y)
        }
        _ => std::cmp::Ordering::Equal,
    }
}

/// A position in a result: the sort key values of a row, then its type and id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cursor {
    /// Rows before this position (a `previous` page) rather than after it.
    #[serde(rename = "b", default, skip_serializing_if = "std::ops::Not::not")]
    pub before: bool,
    #[serde(rename = "k", default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<Value>,
    #[serde(rename = "t")]
    pub rtype: String,
    #[serde(rename = "i")]
    pub id: String,
}

impl Cursor {
    /// The position of `version` in a result ordered by `sort`.
    pub fn of(version: &Version, sort: &[SortKey], before: bool) -> Cursor {
        let needs_index = sort.iter().any(|k| matches!(k.kind, SortKind::Index(_)));
        let entries = if needs_index {
            index(&version.json())
        } else {
            Entries::default()
        };
        Cursor {
            before,
            keys: sort.iter().map(|k| k.value_of(version, &entries)).collect(),
            rtype: version.resource_type.clone(),
            id: version.id.clone(),
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// `ORDER BY` terms over the subquery `m` (keys `m.k1`, ...), reversed for a `previous` page.
/// Rows without a value for a key come last, whichever the direction (a term left out when
/// the first key never lacks one, so that an index can give the order).
pub fn order_by(sql: &Sql, sort: &[SortKey], reverse: bool, first_never_null: bool) -> String {
    let dir = |desc: bool| if desc != reverse { "DESC" } else { "ASC" };
    let mut terms = Vec::new();
    for (i, key) in sort.iter().enumerate() {
        let k = format!("m.k{}", i + 1);
        if !(i == 0 && first_never_null) {
            terms.push(format!(
                "CASE WHEN {k} IS NULL THEN 1 ELSE 0 END {}",
                dir(false)
            ));
        }
        let k = if key.is_text() { sql.bytewise(&k) } else { k };
        terms.push(format!("{k} {}", dir(key.descending)));
    }
    terms.push(format!("m.resource_type {}", dir(false)));
    terms.push(format!("m.resource_id {}", dir(false)));
    terms.join(", ")
}

/// The rows strictly after (or before) `cursor` in the order of `sort`; `None` when the
/// cursor does not fit these keys.
pub fn beyond(
    sql: &mut Sql,
    sort: &[SortKey],
    cursor: &Cursor,
    only_type: Option<&str>,
) -> Option<String> {
    if cursor.keys.len() != sort.len() {
        return None;
    }
    let before = cursor.before;
    let gt = if before { "<" } else { ">" };
    // innermost: the tie-break on type and id. A search of the cursor's one type compares
    // ids alone: written with the type, SQLite bounds its walk of the primary key by the
    // type only, and every page read the type's ids from the first (a whole export took
    // minutes); a row value `(type, id) > (t, i)` fares no better there.
    let mut cond = if only_type == Some(cursor.rtype.as_str()) {
        let id = sql.text(&cursor.id);
        format!("m.resource_id {gt} {id}")
    } else {
        let (t, id) = (sql.text(&cursor.rtype), sql.text(&cursor.id));
        format!("m.resource_type {gt} {t} OR (m.resource_type = {t} AND m.resource_id {gt} {id})")
    };
    for (i, key) in sort.iter().enumerate().rev() {
        let k = format!("m.k{}", i + 1);
        let kc = if key.is_text() {
            sql.bytewise(&k)
        } else {
            k.clone()
        };
        let value = &cursor.keys[i];
        let (strictly, equal) = if value.is_null() {
            // nulls come last: before a null is every non-null; nothing non-null is after it
            let strictly = if before {
                format!("{k} IS NOT NULL")
            } else {
                "FALSE".into()
            };
            (strictly, format!("{k} IS NULL"))
        } else {
            let v = key.bind(sql, value)?;
            let op = if key.descending != before { "<" } else { ">" };
            let strictly = if before {
                format!("{kc} {op} {v}")
            } else {
                format!("({kc} {op} {v} OR {k} IS NULL)")
            };
            (strictly, format!("{kc} = {v}"))
        };
        cond = format!("{strictly} OR ({equal} AND ({cond}))");
    }
    Some(format!("({cond})"))
}
