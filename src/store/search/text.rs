//! A full-text query (`fhir::search::text::TextQuery`) as an SQL condition: FTS5's `MATCH` on
//! SQLite, a `tsquery` on PostgreSQL. Both are written here from the parsed query, never from
//! the client's text: every word is letters and digits only (`text::words`), quoted besides,
//! so nothing a client types can reach either engine's query syntax.

use super::filter::Owner;
use super::sql::Sql;
use crate::fhir::search::text::{Term, TextField, TextQuery};

/// The condition `query` puts on `owner`.
pub fn text_sql(sql: &mut Sql, owner: &Owner, query: &TextQuery) -> String {
    let id = format!("{}.resource_id", owner.row);
    if sql.pg {
        let q = sql.text(&tsquery(query));
        let t = sql.alias("t");
        let column = match query.field {
            TextField::Narrative => "narrative",
            TextField::Content => "content",
        };
        format!(
            "{id} IN (SELECT {t}.resource_id FROM search_text {t} \
             WHERE {t}.resource_type = {ty} AND {t}.{column} @@ to_tsquery('simple', {q}))",
            ty = owner.ty
        )
    } else {
        let q = sql.text(&fts5(query));
        let k = sql.alias("k");
        format!(
            "{id} IN (SELECT {k}.resource_id FROM search_text_rows {k} \
             WHERE {k}.resource_type = {ty} AND {k}.id IN \
             (SELECT rowid FROM search_text WHERE search_text MATCH {q}))",
            ty = owner.ty
        )
    }
}

/// FTS5's query syntax: `"phrase"`, `"prefix"*`, `a AND b NOT c`, `(x) OR (y)`, and a column
/// filter for `_text` (`_content` searches both columns).
fn fts5(query: &TextQuery) -> String {
    let phrase = |t: &Term| {
        let star = if t.prefix { "*" } else { "" };
        format!("\"{}\"{star}", t.words.join(" "))
    };
    let any: Vec<String> = query
        .any_of
        .iter()
        .map(|group| {
            let all: Vec<String> = group.iter().filter(|t| !t.negate).map(phrase).collect();
            let mut s = format!("({})", all.join(" AND "));
            for t in group.iter().filter(|t| t.negate) {
                s = format!("({s} NOT {})", phrase(t));
            }
            s
        })
        .collect();
    let expr = any.join(" OR ");
    match query.field {
        TextField::Narrative => format!("narrative : ({expr})"),
        TextField::Content => expr,
    }
}

/// PostgreSQL's `tsquery`: `a <-> b` for a phrase, `p:*` a prefix, `&`, `|`, `!`.
fn tsquery(query: &TextQuery) -> String {
    let phrase = |t: &Term| {
        let mut words = t.words.clone();
        if t.prefix
            && let Some(last) = words.last_mut()
        {
            last.push_str(":*");
        }
        let p = format!("({})", words.join(" <-> "));
        if t.negate { format!("!{p}") } else { p }
    };
    let any: Vec<String> = query
        .any_of
        .iter()
        .map(|group| {
            let all: Vec<String> = group.iter().map(phrase).collect();
            format!("({})", all.join(" & "))
        })
        .collect();
    any.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_each_engine_s_syntax() {
        let q = TextQuery::parse(
            "_text",
            TextField::Narrative,
            "kidney \"type 2\" -asthma OR diab*",
        )
        .unwrap();
        assert_eq!(
            fts5(&q),
            "narrative : (((\"kidney\" AND \"type 2\") NOT \"asthma\") OR (\"diab\"*))"
        );
        assert_eq!(
            tsquery(&q),
            "((kidney) & (type <-> 2) & !(asthma)) | ((diab:*))"
        );
    }
}
