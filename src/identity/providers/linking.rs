//! The registry's linker: links each record filed pending to its enterprise provider, after
//! the write that filed it committed, in batches, in the order they were filed (the MPI's
//! way: `identity::linker`; it runs in the same task).
//!
//! A practitioner's organizations are those its roles name, as the registry linked them, so
//! records wait on each other: a role filed by a write sends its practitioner back to the
//! linker (it may now share an organization with another); a practitioner or organization
//! that moves to another provider sends the roles naming it (and an organization, their
//! practitioners) back. A record sent back does not send others back in turn, so it ends.

use super::record::{KINDS, Provider};
use super::rules::{self, Evidence, Verdict};
use super::tables::{self, Link, provider_records};
use crate::identity::Grade;
use crate::identity::links::now;
use crate::store::{DbConnection, Store, StoreError};
use diesel::prelude::*;

/// Records linked in one batch: one write for all of them.
pub const BATCH: i64 = 100;
/// Records filed in one write at start (those written before the registry held them).
const REFILE_BATCH: i64 = 500;
/// The registry's own name in link histories.
const LINKER: &str = "emrsync-provider-registry";

/// A record waiting for its link.
struct Pending {
    rtype: String,
    id: String,
    fields: Provider,
    at: i64,
    written: bool,
}

fn pending(conn: &mut DbConnection, limit: i64) -> Result<Vec<Pending>, StoreError> {
    use provider_records::dsl as r;
    let rows: Vec<(String, String, String, Option<i64>, bool)> = r::provider_records
        .filter(r::pending.is_not_null())
        .order(r::pending)
        .select((
            r::resource_type,
            r::resource_id,
            r::fields,
            r::pending,
            r::written,
        ))
        .limit(limit)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(rtype, id, text, at, written)| Pending {
            rtype,
            id,
            fields: serde_json::from_str(&text).unwrap_or_default(),
            at: at.unwrap_or_default(),
            written,
        })
        .collect())
}

/// Clear the pending mark if it is still `at`: whether this linker is the one to link it.
fn claim(conn: &mut DbConnection, p: &Pending) -> Result<bool, StoreError> {
    use provider_records::dsl as r;
    let cleared = diesel::update(
        r::provider_records
            .find((&p.rtype, &p.id))
            .filter(r::pending.eq(p.at)),
    )
    .set(r::pending.eq(None::<i64>))
    .execute(conn)?;
    Ok(cleared == 1)
}

/// What the rules need to know around `rtype/id`: the providers of what it points at, or of
/// the organizations its roles name.
fn evidence(
    conn: &mut DbConnection,
    rtype: &str,
    id: &str,
    fields: &Provider,
) -> Result<Evidence, StoreError> {
    let mut e = Evidence::default();
    match rtype {
        "Practitioner" => {
            let roles = tables::under(conn, "PractitionerRole", &[format!("practitioner:{id}")])?;
            for (_, role) in tables::filed(conn, "PractitionerRole", &roles)? {
                if !role.organization.is_empty() {
                    e.organizations.insert(tables::provider_of(
                        conn,
                        "Organization",
                        &role.organization,
                    )?);
                }
            }
        }
        "PractitionerRole" => {
            if !fields.practitioner.is_empty() {
                e.practitioner = Some(tables::provider_of(
                    conn,
                    "Practitioner",
                    &fields.practitioner,
                )?);
            }
            if !fields.organization.is_empty() {
                e.organization = Some(tables::provider_of(
                    conn,
                    "Organization",
                    &fields.organization,
                )?);
            }
        }
        _ => {}
    }
    Ok(e)
}

/// The keys a record's candidates are filed under: its own, and for a role those of every
/// role of a record of its practitioner's provider (the same doctor, written by another source).
fn candidate_keys(
    conn: &mut DbConnection,
    rtype: &str,
    fields: &Provider,
) -> Result<Vec<String>, StoreError> {
    let mut keys = fields.keys(rtype);
    if rtype == "PractitionerRole" && !fields.practitioner.is_empty() {
        let provider = tables::provider_of(conn, "Practitioner", &fields.practitioner)?;
        for link in tables::links_to(conn, "Practitioner", &provider)? {
            keys.push(format!("practitioner:{}", link.resource_id));
        }
    }
    Ok(keys)
}

/// One candidate as the rules (and a person's decisions) see it.
struct Judged {
    other: String,
    provider: String,
    verdict: Verdict,
    decided_by: Option<String>,
}

/// Link the claimed record `p` to its provider: moved when the rules (or a person's
/// decision) say so, with its history; uncertain pairs put before a person.
fn link(conn: &mut DbConnection, p: &Pending) -> Result<(), StoreError> {
    let rtype = p.rtype.as_str();
    let current = tables::link_of(conn, rtype, &p.id)?;
    let mine = evidence(conn, rtype, &p.id, &p.fields)?;
    let keys = candidate_keys(conn, rtype, &p.fields)?;
    let mut ids = tables::under(conn, rtype, &keys)?;
    ids.retain(|o| *o != p.id);
    let mut certain = Vec::new();
    let mut unsure = Vec::new();
    for (other, fields) in tables::filed(conn, rtype, &ids)? {
        let theirs = evidence(conn, rtype, &other, &fields)?;
        let mut verdict = rules::compare(rtype, (&p.fields, &mine), (&fields, &theirs));
        let mut decided_by = None;
        match tables::review_of(conn, rtype, &p.id, &other)? {
            Some(r) if r.status == "different" => continue,
            Some(r) if r.status == "same" => {
                verdict.grade = Grade::Certain;
                verdict.rule = "decision";
                decided_by = r.decided_by;
            }
            _ => {}
        }
        let provider = tables::provider_of(conn, rtype, &other)?;
        let judged = Judged {
            other,
            provider,
            verdict,
            decided_by,
        };
        match judged.verdict.grade {
            Grade::Certain => certain.push(judged),
            Grade::Probable | Grade::Possible => unsure.push(judged),
            Grade::CertainlyNot => tables::settle(conn, rtype, &p.id, &judged.other)?,
        }
    }
    // where it stays if it already is, else with the first certain
    let current_provider = current.as_ref().map(|l| l.provider_id.clone());
    let chosen = certain
        .iter()
        .find(|j| Some(&j.provider) == current_provider.as_ref())
        .or_else(|| certain.first());
    let next = match (chosen, &current) {
        (Some(j), _) => Link {
            resource_type: rtype.into(),
            resource_id: p.id.clone(),
            provider_id: j.provider.clone(),
            grade: "certain".into(),
            rule: j.verdict.rule.into(),
            linked_at: now(),
            decided_by: j.decided_by.clone(),
        },
        (None, Some(l)) => {
            let others = tables::links_to(conn, rtype, &l.provider_id)?.len() > 1;
            if !others {
                l.clone()
            } else {
                // nothing certain ties it to the others any more: a provider of its own
                let own = tables::own_provider(rtype, &p.id);
                Link {
                    provider_id: match own == l.provider_id {
                        true => uuid::Uuid::now_v7().to_string(),
                        false => own,
                    },
                    grade: "certain".into(),
                    rule: "new".into(),
                    linked_at: now(),
                    decided_by: None,
                    ..l.clone()
                }
            }
        }
        (None, None) => Link {
            resource_type: rtype.into(),
            resource_id: p.id.clone(),
            provider_id: tables::own_provider(rtype, &p.id),
            grade: "certain".into(),
            rule: "new".into(),
            linked_at: now(),
            decided_by: None,
        },
    };
    for j in &certain {
        tables::settle(conn, rtype, &p.id, &j.other)?;
    }
    let moved = current_provider.as_deref() != Some(next.provider_id.as_str());
    if moved {
        let (action, reason) = match (&current, chosen) {
            (None, None) => ("linked", "the first record of its provider".to_string()),
            (_, Some(j)) => (
                if current.is_none() { "linked" } else { "moved" },
                format!("{}: certain with {rtype}/{}", j.verdict.rule, j.other),
            ),
            (Some(_), None) => (
                "unlinked",
                "no record of its provider is certain any more".to_string(),
            ),
        };
        tables::set(conn, &next, action, &reason, LINKER)?;
        let mut touched = vec![next.provider_id.as_str()];
        if let Some(old) = &current {
            tables::mark(conn, rtype, &old.provider_id)?;
            touched.push(&old.provider_id);
        }
        send_back_dependents(conn, rtype, &touched)?;
    }
    for j in &unsure {
        if j.provider == next.provider_id {
            tables::settle(conn, rtype, &p.id, &j.other)?;
        } else {
            let detail = serde_json::to_string(&j.verdict).unwrap_or_default();
            tables::review(
                conn,
                rtype,
                (&p.id, &j.other),
                j.verdict.grade.code(),
                detail,
            )?;
        }
    }
    // a role a source wrote may give its practitioner an organization in common with another
    if rtype == "PractitionerRole" && p.written && !p.fields.practitioner.is_empty() {
        tables::requeue(conn, "Practitioner", &p.fields.practitioner)?;
    }
    Ok(())
}

/// A practitioner or organization moved between the providers `touched`: the roles of every
/// record of both go back to the linker (the rules' evidence changed), and their golden
/// records are stale (they point at the golden practitioner or organization once it has
/// one); an organization's move also sends those roles' practitioners back.
fn send_back_dependents(
    conn: &mut DbConnection,
    rtype: &str,
    touched: &[&str],
) -> Result<(), StoreError> {
    let prefix = match rtype {
        "Practitioner" => "practitioner",
        "Organization" => "organization",
        _ => return Ok(()),
    };
    let mut keys = Vec::new();
    for provider in touched {
        for link in tables::links_to(conn, rtype, provider)? {
            keys.push(format!("{prefix}:{}", link.resource_id));
        }
    }
    let roles = tables::under(conn, "PractitionerRole", &keys)?;
    for (role, fields) in tables::filed(conn, "PractitionerRole", &roles)? {
        tables::requeue(conn, "PractitionerRole", &role)?;
        let provider = tables::provider_of(conn, "PractitionerRole", &role)?;
        tables::mark(conn, "PractitionerRole", &provider)?;
        if rtype == "Organization" && !fields.practitioner.is_empty() {
            tables::requeue(conn, "Practitioner", &fields.practitioner)?;
        }
    }
    Ok(())
}

/// Link one batch of pending records; how many were pending.
pub fn link_pending(store: &Store) -> Result<usize, StoreError> {
    let batch = store.read(|c| pending(c, BATCH))?;
    if batch.is_empty() {
        return Ok(0);
    }
    // few records, each read and decided in the write: a record's evidence may be the
    // link written just before it in the same batch
    store.write_rows(|c| {
        for p in &batch {
            if claim(c, p)? {
                link(c, p)?;
            }
        }
        Ok(())
    })?;
    Ok(batch.len())
}

/// File the current records of `KINDS` the registry does not hold (written before it
/// existed), pending; how many.
pub fn refile(store: &Store) -> Result<usize, StoreError> {
    use crate::store::schema::resources::dsl as r;
    let mut done = 0;
    for rtype in KINDS {
        let mut after = String::new();
        loop {
            let page: Vec<String> = store.read(|c| {
                Ok(r::resources
                    .filter(r::resource_type.eq(rtype))
                    .filter(r::deleted.eq(false))
                    .filter(r::resource_id.gt(&after))
                    .order(r::resource_id)
                    .select(r::resource_id)
                    .limit(REFILE_BATCH)
                    .load(c)?)
            })?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            after = last;
            let versions = store.read(|c| {
                let held: std::collections::HashSet<String> = tables::filed(c, rtype, &page)?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                let missing: Vec<String> = page
                    .iter()
                    .filter(|id| !held.contains(*id))
                    .cloned()
                    .collect();
                crate::store::versions::current_many(c, rtype, &missing)
            })?;
            if versions.is_empty() {
                continue;
            }
            done += store.write_rows(|c| {
                let mut n = 0;
                for v in versions.iter().filter(|v| !v.deleted) {
                    let json = v.json();
                    if crate::fhir::resource::is_golden_record(&json) {
                        continue;
                    }
                    if let Some(fields) = Provider::of(rtype, &json) {
                        tables::file(c, (rtype, &v.id), &fields, (v.last_updated, true, "refile"))?;
                        n += 1;
                    }
                }
                Ok(n)
            })?;
        }
    }
    Ok(done)
}
