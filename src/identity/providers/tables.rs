//! The registry's rows (migration 2026-12-06-000018_providers): each record filed with what
//! the rules compare and its blocking keys, its link to an enterprise provider, the history of
//! its links, and the pairs a person is asked about.

use super::record::Provider;
use crate::identity::links::now;
use crate::store::{DbConnection, StoreError};
use diesel::prelude::*;
use serde::Serialize;

diesel::table! {
    provider_records (resource_type, resource_id) {
        resource_type -> Text,
        resource_id -> Text,
        fields -> Text,
        pending -> Nullable<BigInt>,
        written -> Bool,
        filed_by -> Text,
    }
}

diesel::table! {
    provider_keys (key, resource_type, resource_id) {
        key -> Text,
        resource_type -> Text,
        resource_id -> Text,
    }
}

diesel::table! {
    provider_links (resource_type, resource_id) {
        resource_type -> Text,
        resource_id -> Text,
        provider_id -> Text,
        grade -> Text,
        rule -> Text,
        linked_at -> BigInt,
        decided_by -> Nullable<Text>,
    }
}

diesel::table! {
    provider_link_history (seq) {
        seq -> BigInt,
        resource_type -> Text,
        resource_id -> Text,
        provider_id -> Text,
        action -> Text,
        grade -> Text,
        rule -> Text,
        reason -> Text,
        at -> BigInt,
        who -> Text,
    }
}

diesel::table! {
    provider_reviews (id) {
        id -> Text,
        resource_type -> Text,
        resource_id -> Text,
        other_id -> Text,
        grade -> Text,
        detail -> Text,
        status -> Text,
        created_at -> BigInt,
        decided_at -> Nullable<BigInt>,
        decided_by -> Nullable<Text>,
    }
}

diesel::table! {
    provider_stale (resource_type, provider_id) {
        resource_type -> Text,
        provider_id -> Text,
        since -> BigInt,
    }
}

/// A record's link to its enterprise provider.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Serialize)]
#[diesel(table_name = provider_links)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    pub resource_type: String,
    pub resource_id: String,
    pub provider_id: String,
    pub grade: String,
    /// `npi`, `identifier`, `name-and-organization`, `name-and-address`,
    /// `practitioner-and-organization` (the rules'), `new` (its provider's first record),
    /// `decision` (a person's).
    pub rule: String,
    pub linked_at: i64,
    #[diesel(treat_none_as_null = true)]
    pub decided_by: Option<String>,
}

/// One change of a link.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = provider_link_history)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub seq: i64,
    pub resource_id: String,
    pub provider_id: String,
    pub action: String,
    pub grade: String,
    pub rule: String,
    pub reason: String,
    pub at: i64,
    pub who: String,
}

/// A pair for a person to decide.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = provider_reviews)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    pub id: String,
    pub resource_type: String,
    pub resource_id: String,
    pub other_id: String,
    pub grade: String,
    pub detail: String,
    /// `open`, `same` or `different`.
    pub status: String,
    pub created_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
}

/// The enterprise provider a record is the first of: derived from its type and id, so that
/// it is the same however often it is computed (`identity::links::own_person`'s way).
pub fn own_provider(rtype: &str, id: &str) -> String {
    crate::identity::links::own_person(&format!("{rtype}/{id}"))
}

/// File the record `rtype/id` with `fields`, pending for the linker since `at`; `written`
/// when a source's write filed it.
pub fn file(
    conn: &mut DbConnection,
    (rtype, id): (&str, &str),
    fields: &Provider,
    (at, written, by): (i64, bool, &str),
) -> Result<(), StoreError> {
    use provider_keys::dsl as k;
    use provider_records::dsl as r;
    diesel::delete(
        k::provider_keys
            .filter(k::resource_type.eq(rtype))
            .filter(k::resource_id.eq(id)),
    )
    .execute(conn)?;
    let keys: Vec<_> = fields
        .keys(rtype)
        .into_iter()
        .map(|key| {
            (
                k::key.eq(key),
                k::resource_type.eq(rtype),
                k::resource_id.eq(id),
            )
        })
        .collect();
    if !keys.is_empty() {
        crate::store::insert_all!(conn, k::provider_keys, keys)?;
    }
    let text = serde_json::to_string(fields).unwrap_or_default();
    let updated = diesel::update(r::provider_records.find((rtype, id)))
        .set((
            r::fields.eq(&text),
            r::pending.eq(Some(at)),
            r::written.eq(written),
            r::filed_by.eq(by),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(r::provider_records)
            .values((
                r::resource_type.eq(rtype),
                r::resource_id.eq(id),
                r::fields.eq(&text),
                r::pending.eq(Some(at)),
                r::written.eq(written),
                r::filed_by.eq(by),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Take the record out of the registry (deleted): no longer a candidate, nor linked.
pub fn unfile(conn: &mut DbConnection, rtype: &str, id: &str, who: &str) -> Result<(), StoreError> {
    use provider_keys::dsl as k;
    use provider_records::dsl as r;
    diesel::delete(
        k::provider_keys
            .filter(k::resource_type.eq(rtype))
            .filter(k::resource_id.eq(id)),
    )
    .execute(conn)?;
    diesel::delete(r::provider_records.find((rtype, id))).execute(conn)?;
    if let Some(link) = link_of(conn, rtype, id)? {
        diesel::delete(provider_links::table.find((rtype, id))).execute(conn)?;
        history(conn, &link, "unlinked", "the record was deleted", who)?;
        mark(conn, rtype, &link.provider_id)?;
    }
    Ok(())
}

/// Mark `rtype/id` pending again (a record it depends on moved), if it is filed and not
/// already pending.
pub fn requeue(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<(), StoreError> {
    use provider_records::dsl as r;
    diesel::update(
        r::provider_records
            .find((rtype, id))
            .filter(r::pending.is_null()),
    )
    .set((r::pending.eq(Some(now())), r::written.eq(false)))
    .execute(conn)?;
    Ok(())
}

/// Whether the filed record waits for the linker.
pub fn is_pending(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<bool, StoreError> {
    use provider_records::dsl as r;
    let at: Option<Option<i64>> = r::provider_records
        .find((rtype, id))
        .select(r::pending)
        .get_result(conn)
        .optional()?;
    Ok(at.flatten().is_some())
}

/// What the registry holds of `rtype/ids` that is filed, as (id, fields).
pub fn filed(
    conn: &mut DbConnection,
    rtype: &str,
    ids: &[String],
) -> Result<Vec<(String, Provider)>, StoreError> {
    use provider_records::dsl as r;
    let rows: Vec<(String, String)> = r::provider_records
        .filter(r::resource_type.eq(rtype))
        .filter(r::resource_id.eq_any(ids))
        .select((r::resource_id, r::fields))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, text)| (id, serde_json::from_str(&text).unwrap_or_default()))
        .collect())
}

/// The records of `rtype` filed under any of `keys`.
pub fn under(
    conn: &mut DbConnection,
    rtype: &str,
    keys: &[String],
) -> Result<Vec<String>, StoreError> {
    use provider_keys::dsl as k;
    let mut ids: Vec<String> = k::provider_keys
        .filter(k::resource_type.eq(rtype))
        .filter(k::key.eq_any(keys))
        .select(k::resource_id)
        .load(conn)?;
    ids.sort();
    ids.dedup();
    Ok(ids)
}

pub fn link_of(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<Option<Link>, StoreError> {
    Ok(provider_links::table
        .find((rtype, id))
        .select(Link::as_select())
        .get_result(conn)
        .optional()?)
}

/// The enterprise provider of `rtype/id`: its link's, else its own.
pub fn provider_of(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<String, StoreError> {
    Ok(link_of(conn, rtype, id)?.map_or_else(|| own_provider(rtype, id), |l| l.provider_id))
}

/// The links to the enterprise provider `provider` of `rtype`.
pub fn links_to(
    conn: &mut DbConnection,
    rtype: &str,
    provider: &str,
) -> Result<Vec<Link>, StoreError> {
    use provider_links::dsl as l;
    Ok(l::provider_links
        .filter(l::resource_type.eq(rtype))
        .filter(l::provider_id.eq(provider))
        .order(l::resource_id)
        .select(Link::as_select())
        .load(conn)?)
}

/// Whether `id` is, or was, an enterprise provider of `rtype` (its golden record the
/// registry's to write).
pub fn was_a_provider(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<bool, StoreError> {
    use provider_link_history::dsl as h;
    Ok(diesel::select(diesel::dsl::exists(
        h::provider_link_history
            .filter(h::resource_type.eq(rtype))
            .filter(h::provider_id.eq(id)),
    ))
    .get_result(conn)?)
}

/// Write `link` in place of the record's previous one, with its history row; its provider's
/// golden record is stale.
pub fn set(
    conn: &mut DbConnection,
    link: &Link,
    action: &str,
    reason: &str,
    who: &str,
) -> Result<(), StoreError> {
    use provider_links::dsl as l;
    let upsert = diesel::insert_into(l::provider_links)
        .values(link)
        .on_conflict((l::resource_type, l::resource_id))
        .do_update()
        .set(link);
    match conn {
        DbConnection::Pg(c) => upsert.execute(c)?,
        DbConnection::Sqlite(c) => upsert.execute(c)?,
    };
    history(conn, link, action, reason, who)?;
    mark(conn, &link.resource_type, &link.provider_id)
}

fn history(
    conn: &mut DbConnection,
    link: &Link,
    action: &str,
    reason: &str,
    who: &str,
) -> Result<(), StoreError> {
    use provider_link_history::dsl as h;
    diesel::insert_into(h::provider_link_history)
        .values((
            h::resource_type.eq(&link.resource_type),
            h::resource_id.eq(&link.resource_id),
            h::provider_id.eq(&link.provider_id),
            h::action.eq(action),
            h::grade.eq(&link.grade),
            h::rule.eq(&link.rule),
            h::reason.eq(reason),
            h::at.eq(now()),
            h::who.eq(who),
        ))
        .execute(conn)?;
    Ok(())
}

/// The history of a record's links, oldest first.
pub fn changes(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<Vec<Change>, StoreError> {
    use provider_link_history::dsl as h;
    Ok(h::provider_link_history
        .filter(h::resource_type.eq(rtype))
        .filter(h::resource_id.eq(id))
        .order(h::seq)
        .select(Change::as_select())
        .load(conn)?)
}

/// Mark the golden record of `rtype`'s `provider` stale.
pub fn mark(conn: &mut DbConnection, rtype: &str, provider: &str) -> Result<(), StoreError> {
    use provider_stale::dsl as s;
    let at = now();
    let upsert = diesel::insert_into(s::provider_stale)
        .values((
            s::resource_type.eq(rtype),
            s::provider_id.eq(provider),
            s::since.eq(at),
        ))
        .on_conflict((s::resource_type, s::provider_id))
        .do_update()
        .set(s::since.eq(at));
    match conn {
        DbConnection::Pg(c) => upsert.execute(c)?,
        DbConnection::Sqlite(c) => upsert.execute(c)?,
    };
    Ok(())
}

/// The pair's ids in the order reviews keep them.
fn pair<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b { (a, b) } else { (b, a) }
}

pub fn review_of(
    conn: &mut DbConnection,
    rtype: &str,
    a: &str,
    b: &str,
) -> Result<Option<Review>, StoreError> {
    use provider_reviews::dsl as r;
    let (a, b) = pair(a, b);
    Ok(r::provider_reviews
        .filter(r::resource_type.eq(rtype))
        .filter(r::resource_id.eq(a))
        .filter(r::other_id.eq(b))
        .select(Review::as_select())
        .get_result(conn)
        .optional()?)
}

/// Put the pair before a person (`detail`: the fields compared); an open review is brought up
/// to date, a decided one left as decided.
pub fn review(
    conn: &mut DbConnection,
    rtype: &str,
    (a, b): (&str, &str),
    grade: &str,
    detail: String,
) -> Result<(), StoreError> {
    use provider_reviews::dsl as r;
    match review_of(conn, rtype, a, b)? {
        Some(open) if open.status == "open" => {
            diesel::update(r::provider_reviews.find(&open.id))
                .set((r::grade.eq(grade), r::detail.eq(detail)))
                .execute(conn)?;
        }
        Some(_decided) => {}
        None => {
            let (a, b) = pair(a, b);
            let row = Review {
                id: uuid::Uuid::now_v7().to_string(),
                resource_type: rtype.into(),
                resource_id: a.into(),
                other_id: b.into(),
                grade: grade.into(),
                detail,
                status: "open".into(),
                created_at: now(),
                decided_at: None,
                decided_by: None,
            };
            diesel::insert_into(r::provider_reviews)
                .values(&row)
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Close the pair's open review, if any: the rules have since decided it.
pub fn settle(conn: &mut DbConnection, rtype: &str, a: &str, b: &str) -> Result<(), StoreError> {
    use provider_reviews::dsl as r;
    let (a, b) = pair(a, b);
    diesel::delete(
        r::provider_reviews
            .filter(r::resource_type.eq(rtype))
            .filter(r::resource_id.eq(a))
            .filter(r::other_id.eq(b))
            .filter(r::status.eq("open")),
    )
    .execute(conn)?;
    Ok(())
}

/// Reviews with `status`, newest first, at most `limit`.
pub fn reviews(
    conn: &mut DbConnection,
    status: &str,
    limit: i64,
) -> Result<Vec<Review>, StoreError> {
    use provider_reviews::dsl as r;
    Ok(r::provider_reviews
        .filter(r::status.eq(status))
        .order(r::created_at.desc())
        .limit(limit)
        .select(Review::as_select())
        .load(conn)?)
}

pub fn review_by_id(conn: &mut DbConnection, id: &str) -> Result<Option<Review>, StoreError> {
    Ok(provider_reviews::table
        .find(id)
        .select(Review::as_select())
        .get_result(conn)
        .optional()?)
}

/// Record a person's decision on a review.
pub fn decide_review(
    conn: &mut DbConnection,
    id: &str,
    status: &str,
    who: &str,
) -> Result<(), StoreError> {
    use provider_reviews::dsl as r;
    diesel::update(r::provider_reviews.find(id))
        .set((
            r::status.eq(status),
            r::decided_at.eq(Some(now())),
            r::decided_by.eq(Some(who)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Open the review `id` again: its decision is withdrawn.
pub fn reopen_review(conn: &mut DbConnection, id: &str) -> Result<(), StoreError> {
    use provider_reviews::dsl as r;
    diesel::update(r::provider_reviews.find(id))
        .set((
            r::status.eq("open"),
            r::decided_at.eq(None::<i64>),
            r::decided_by.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(())
}

/// How far the registry is behind: records pending, golden records stale, reviews open.
pub fn backlog(conn: &mut DbConnection) -> Result<(i64, i64, i64), StoreError> {
    let pending = provider_records::table
        .filter(provider_records::pending.is_not_null())
        .count()
        .get_result(conn)?;
    let stale = provider_stale::table.count().get_result(conn)?;
    let open = provider_reviews::table
        .filter(provider_reviews::status.eq("open"))
        .count()
        .get_result(conn)?;
    Ok((pending, stale, open))
}
