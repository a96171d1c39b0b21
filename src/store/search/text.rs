//! A full-text query (`fhir::search::text::TextQuery`) as an SQL condition: FTS5's `MATCH` on
//! SQLite, a `tsquery` on PostgreSQL. Both are written here from the parsed query, never from
//! the client's text: every word is letters and digits only (`text::words`), quoted besides,
//! so nothing a client types can reach either engine's query syntax.

use super::filter::Owner;
use super::sql::Sql;
use crate::fhir::search::text::{Term, TextField, TextQuery};

/// The condition `query` puts on `owner`. The text index is read once, never per row: with
/// the type fixed, its matches of that type; in a search of every type, its matches of any
/// type (a subquery correlated on the row's type would run the text query once a row).
pub fn text_sql(sql: &mut Sql, owner: &Owner, query: &TextQuery) -> String {
    let row = owner.row;
    let Matches {
        from,
        key_type,
        key_id,
    } = matches(sql, query);
    if owner.type_is_fixed() {
        let key_type = sql.no_index(&key_type);
        format!(
            "{row}.resource_id IN (SELECT {key_id} FROM {from} AND {key_type} = {ty})",
            ty = owner.ty
        )
    } else {
        format!(
            "({row}.resource_type, {row}.resource_id) IN (SELECT {key_type}, {key_id} FROM {from})"
        )
    }
}

/// The ids of the first `limit` resources of type `ty` (a placeholder) whose text matches
/// `query`, after the id `after` (a placeholder) if given, in id order: the page of a search
/// whose only filter is this text, read from the text index alone. Text rows exist for current
/// resources only, so their order is the search's own (type, then id).
pub fn first_ids_sql(
    sql: &mut Sql,
    ty: &str,
    query: &TextQuery,
    after: Option<&str>,
    limit: &str,
) -> String {
    let Matches {
        from,
        key_type,
        key_id,
    } = matches(sql, query);
    let key_type = sql.no_index(&key_type);
    let after = after
        .map(|a| format!(" AND {key_id} > {a}"))
        .unwrap_or_default();
    format!(
        "SELECT {key_id} AS resource_id FROM {from} AND {key_type} = {ty}{after} \
         ORDER BY {key_id} LIMIT {limit}"
    )
}

/// Where a text query's matches are, as `FROM ... WHERE <match>` and the columns of their
/// type and id.
struct Matches {
    from: String,
    key_type: String,
    key_id: String,
}

fn matches(sql: &mut Sql, query: &TextQuery) -> Matches {
    if sql.pg {
        let q = sql.text(&tsquery(query));
        let t = sql.alias("t");
        let (table, column) = match query.field {
            TextField::Narrative => ("search_narrative", "narrative"),
            TextField::Content => ("search_text", "content"),
        };
        Matches {
            from: format!("{table} {t} WHERE {t}.{column} @@ to_tsquery('simple', {q})"),
            key_type: format!("{t}.resource_type"),
            key_id: format!("{t}.resource_id"),
        }
    } else {
        let q = sql.text(&fts5(query));
        let (t, k) = (sql.alias("f"), sql.alias("k"));
        // from the FTS matches to their keys by rowid (SQLite would otherwise read every key
        // of the type and probe the matches)
        Matches {
            from: format!(
                "search_text {t} CROSS JOIN search_text_rows {k} ON {k}.id = {t}.rowid \
                 WHERE {t}.search_text MATCH {q}"
            ),
            key_type: format!("{k}.resource_type"),
            key_id: format!("{k}.resource_id"),
        }
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
