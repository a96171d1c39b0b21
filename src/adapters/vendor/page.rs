//! A page of a source's records, applied: each record mapped (`mapping`) and accepted by the
//! ingest path like any write; what was made is written, with where the reading stands after
//! the page (its cursor) and the records that were refused (the exception queue, each whole
//! with the element and JSONPath at fault), in one transaction. A crash before the commit
//! leaves the cursor where it was and the page is read again; after it, the next page follows:
//! no record is lost or applied twice.
//!
//! A page whose write the store refuses as a whole (a record invalid there, or that a
//! source-of-truth rule refuses or holds: another source owns that domain) is applied again
//! record by record, each refused one to the
//! exception queue, the cursor and the queue written last: a record applied again after a
//! crash there says what its resource already says, and is not written again.

use super::mapping::{Context, Maps, Refused};
use crate::auth::Grant;
use crate::fhir::resource::now_micros;
use crate::ingest::restate::{Plain, Stated, Unit, restate_all};
use crate::ingest::{Channel, Ingest, IngestError, Source, Writer};
use crate::store::schema::{vendor_cursors as vc, vendor_exceptions as ve};
use crate::store::{Actor, DbConnection, StoreError, Tx};
use diesel::prelude::*;
use serde_json::Value;
use std::ops::ControlFlow;
use std::sync::Arc;

/// One page of records of one type.
pub struct Page<'a> {
    pub record_type: &'a str,
    pub records: &'a [Value],
    /// Where the reading stands after this page (the source's next-page token, the newest
    /// change time seen): what the next poll starts from. `None` keeps it where it was.
    pub cursor: Option<String>,
    /// More of the page's own work in its transaction, given what came of the page: a dropped
    /// file's progress and report (`folder`).
    pub also: Option<&'a Also<'a>>,
}

/// Work done in a page's transaction once its records are written.
pub type Also<'a> = dyn Fn(&mut DbConnection, &Applied) -> Result<(), StoreError> + Sync + 'a;

/// What a page came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Records mapped and accepted (written, or found to say what their resource says).
    pub accepted: usize,
    /// Records sent to the exception queue.
    pub refused: usize,
    /// Which those were (their place in the page, from 0) and why.
    pub refusals: Vec<(usize, Refused)>,
}

/// A record that did not go in, as the exception queue keeps it.
struct Exception {
    /// Its place in the page.
    at: usize,
    vendor_key: Option<String>,
    record: String,
    refused: Refused,
}

impl Applied {
    fn of(accepted: usize, exceptions: &[Exception]) -> Applied {
        let mut refusals: Vec<_> = exceptions
            .iter()
            .map(|e| (e.at, e.refused.clone()))
            .collect();
        refusals.sort_by_key(|(at, _)| *at);
        Applied {
            accepted,
            refused: exceptions.len(),
            refusals,
        }
    }
}

/// A page's records mapped and accepted, nothing written yet: what `write` writes. Preparing
/// reads nothing the page's write changes, so a poller prepares the next page while the last
/// one is written.
pub struct Prepared {
    writer: Writer,
    /// The records that made a resource (their places in the page), and those resources.
    places: Vec<usize>,
    resources: Vec<Stated>,
    exceptions: Vec<Exception>,
}

/// Map and accept `records` of `record_type` (of source `source`, whose maps are `maps`).
pub fn prepare(
    ingest: &Ingest,
    source: &str,
    maps: &Maps,
    cx: &Context<'_>,
    (record_type, records): (&str, &[Value]),
) -> Prepared {
    let writer = writer(ingest, source);
    let mut places = Vec::with_capacity(records.len());
    let mut resources = Vec::with_capacity(records.len());
    let mut exceptions = Vec::new();
    for (at, record) in records.iter().enumerate() {
        match made(maps, record_type, record, cx, &writer) {
            Ok(r) => {
                places.push(at);
                resources.push(r);
            }
            Err(refused) => exceptions.push(exception(maps, record_type, (at, record), refused)),
        }
    }
    Prepared {
        writer,
        places,
        resources,
        exceptions,
    }
}

/// Apply `page` of source `source` (whose maps are `maps`).
pub fn apply(
    ingest: &Ingest,
    source: &str,
    maps: &Maps,
    cx: &Context<'_>,
    page: &Page<'_>,
) -> Result<Applied, StoreError> {
    let prepared = prepare(ingest, source, maps, cx, (page.record_type, page.records));
    write(ingest, (source, maps), page, prepared)
}

/// Write `page`, whose records `prepared` holds mapped, with its cursor and exceptions.
pub fn write(
    ingest: &Ingest,
    (source, maps): (&str, &Maps),
    page: &Page<'_>,
    prepared: Prepared,
) -> Result<Applied, StoreError> {
    let Prepared {
        writer,
        places,
        resources,
        exceptions,
    } = prepared;
    let applied = Applied::of(resources.len(), &exceptions);
    let unit = PageUnit {
        source,
        page,
        exceptions: &exceptions,
        applied: &applied,
    };
    let applied = match restate_all(&ingest.store, &writer, &resources, &unit) {
        Ok(()) => applied,
        // one record the store refuses (invalid there, or not this source's to change)
        // refuses the page's write: the others go in alone
        Err(StoreError::Invalid(_) | StoreError::NotOwner(_) | StoreError::Held(_)) => {
            let made = places.into_iter().zip(resources).collect();
            one_by_one(ingest, (&writer, maps), made, exceptions, (source, page))?
        }
        Err(e) => return Err(e),
    };
    let counted = |outcome: &'static str, n: usize| {
        metrics::counter!("emrsync_vendor_records_total", "source" => source.to_string(),
            "record_type" => page.record_type.to_string(), "outcome" => outcome)
        .increment(n as u64);
    };
    counted("accepted", applied.accepted);
    counted("refused", applied.refused);
    Ok(applied)
}

/// The page again, each record alone: those the store refuses join the exception queue.
fn one_by_one(
    ingest: &Ingest,
    (writer, maps): (&Writer, &Maps),
    made: Vec<(usize, Stated)>,
    mut exceptions: Vec<Exception>,
    (source, page): (&str, &Page<'_>),
) -> Result<Applied, StoreError> {
    let mut accepted = 0;
    for (at, r) in made {
        let record = &page.records[at];
        match restate_all(&ingest.store, writer, std::slice::from_ref(&r), &Plain) {
            Ok(()) => accepted += 1,
            Err(e) => {
                let refused = match e {
                    StoreError::Invalid(issues) => {
                        refused_by(&issues, r.rtype, "the store refused the")
                    }
                    // a source-of-truth rule: its words name the domain, owner and elements;
                    // a rule that holds rather than refuses holds it here too (the queue is
                    // where a person sees it; replayed once the owner's data agrees)
                    StoreError::NotOwner(why) => {
                        not_applied(r.rtype, format!("not applied: {why}"))
                    }
                    StoreError::Held(why) => {
                        not_applied(r.rtype, format!("held for review: {why}"))
                    }
                    e => return Err(e),
                };
                exceptions.push(Exception {
                    at,
                    vendor_key: maps.key_of(page.record_type, record),
                    record: record.to_string(),
                    refused,
                })
            }
        }
    }
    let applied = Applied::of(accepted, &exceptions);
    let unit = PageUnit {
        source,
        page,
        exceptions: &exceptions,
        applied: &applied,
    };
    restate_all(&ingest.store, writer, &[], &unit)?;
    Ok(applied)
}

fn not_applied(rtype: &str, reason: String) -> Refused {
    Refused {
        element: rtype.to_string(),
        path: "$".into(),
        reason,
    }
}

/// The writer of a source's records: the source, by name, held to everything on the ingest
/// path but a token's scopes (its definition is the operator's).
fn writer(ingest: &Ingest, source: &str) -> Writer {
    ingest.writer(
        Arc::new(Grant::unrestricted()),
        Actor::Named(format!("vendor {source}")),
        Source {
            channel: Channel::Vendor,
            system: source.to_string(),
            reviewed_by: None,
        },
        crate::store::new_correlation_id(),
    )
}

/// The resource a record makes, mapped and accepted (valid R4, codes normalised).
fn made(
    maps: &Maps,
    record_type: &str,
    record: &Value,
    cx: &Context<'_>,
    writer: &Writer,
) -> Result<Stated, Refused> {
    let stated = maps.map(record_type, record, cx)?;
    let accepted = writer
        .accept(stated.body, stated.rtype, false)
        .map_err(|e| match e {
            IngestError::Invalid(issues) => {
                refused_by(&issues, stated.rtype, "not valid FHIR: the mapped")
            }
            other => Refused {
                element: stated.rtype.to_string(),
                path: "$".into(),
                reason: other.to_string(),
            },
        })?;
    Ok(Stated {
        body: accepted.resource,
        ..stated
    })
}

/// A record refused for `issues` its resource (`rtype`) met: the first issue's element, every
/// issue's words after `what` and the type.
fn refused_by(issues: &[crate::fhir::Issue], rtype: &str, what: &str) -> Refused {
    Refused {
        element: issues
            .first()
            .and_then(|i| i.expression.clone())
            .unwrap_or_else(|| rtype.to_string()),
        path: "$".into(),
        reason: format!(
            "{what} {rtype}: {}",
            issues
                .iter()
                .map(|i| i.diagnostics.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

fn exception(
    maps: &Maps,
    record_type: &str,
    (at, record): (usize, &Value),
    refused: Refused,
) -> Exception {
    Exception {
        at,
        vendor_key: maps.key_of(record_type, record),
        record: record.to_string(),
        refused,
    }
}

/// The page's own work in its transaction: the cursor, the exceptions.
struct PageUnit<'a> {
    source: &'a str,
    page: &'a Page<'a>,
    exceptions: &'a [Exception],
    applied: &'a Applied,
}

impl Unit for PageUnit<'_> {
    type Done = ();
    type Seen = ();

    fn look(&self, _: &mut Tx) -> Result<ControlFlow<(), ()>, StoreError> {
        Ok(ControlFlow::Continue(()))
    }

    fn finish(&self, tx: &mut Tx, _: (), _: Vec<String>) -> Result<(), StoreError> {
        let now = now_micros();
        if let Some(cursor) = &self.page.cursor {
            set_cursor(tx.conn, self.source, self.page.record_type, cursor, now)?;
        }
        for e in self.exceptions {
            // a record waiting in the queue as it is (a source that sends its last change
            // again at the start of the next page) is not queued twice
            let mut same = ve::table
                .filter(ve::source.eq(self.source))
                .filter(ve::record_type.eq(self.page.record_type))
                .filter(ve::status.eq("open"))
                .filter(ve::record.eq(&e.record))
                .into_boxed();
            same = match &e.vendor_key {
                Some(k) => same.filter(ve::vendor_key.eq(k)),
                None => same.filter(ve::vendor_key.is_null()),
            };
            let waiting: i64 = same.count().get_result(tx.conn)?;
            if waiting > 0 {
                continue;
            }
            diesel::insert_into(ve::table)
                .values((
                    ve::source.eq(self.source),
                    ve::record_type.eq(self.page.record_type),
                    ve::vendor_key.eq(&e.vendor_key),
                    ve::record.eq(&e.record),
                    ve::element.eq(&e.refused.element),
                    ve::path.eq(&e.refused.path),
                    ve::reason.eq(&e.refused.reason),
                    ve::status.eq("open"),
                    ve::created_at.eq(now),
                ))
                .execute(tx.conn)?;
        }
        if let Some(also) = self.page.also {
            also(tx.conn, self.applied)?;
        }
        Ok(())
    }
}

fn set_cursor(
    conn: &mut DbConnection,
    source: &str,
    record_type: &str,
    cursor: &str,
    now: i64,
) -> Result<(), StoreError> {
    let changed = diesel::update(
        vc::table
            .filter(vc::source.eq(source))
            .filter(vc::record_type.eq(record_type)),
    )
    .set((vc::cursor.eq(cursor), vc::updated_at.eq(now)))
    .execute(conn)?;
    if changed == 0 {
        diesel::insert_into(vc::table)
            .values((
                vc::source.eq(source),
                vc::record_type.eq(record_type),
                vc::cursor.eq(cursor),
                vc::updated_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Where the reading of `record_type` from `source` stands (`None`: from the start).
pub fn cursor(
    conn: &mut DbConnection,
    source: &str,
    record_type: &str,
) -> Result<Option<String>, StoreError> {
    Ok(vc::table
        .filter(vc::source.eq(source))
        .filter(vc::record_type.eq(record_type))
        .select(vc::cursor)
        .get_result(conn)
        .optional()?)
}

/// An open exception as a person sees it.
#[derive(Debug, Clone, Queryable, serde::Serialize)]
pub struct Open {
    pub seq: i64,
    pub record_type: String,
    pub vendor_key: Option<String>,
    pub record: String,
    pub element: String,
    pub path: String,
    pub reason: String,
    pub created_at: i64,
}

/// The open exceptions of `source`, oldest first.
pub fn open(conn: &mut DbConnection, source: &str, limit: i64) -> Result<Vec<Open>, StoreError> {
    Ok(ve::table
        .filter(ve::source.eq(source))
        .filter(ve::status.eq("open"))
        .order(ve::seq.asc())
        .limit(limit)
        .select((
            ve::seq,
            ve::record_type,
            ve::vendor_key,
            ve::record,
            ve::element,
            ve::path,
            ve::reason,
            ve::created_at,
        ))
        .load(conn)?)
}

/// The sources with records waiting in their exception queues.
pub fn sources_waiting(conn: &mut DbConnection) -> Result<Vec<String>, StoreError> {
    Ok(ve::table
        .filter(ve::status.eq("open"))
        .select(ve::source)
        .distinct()
        .load(conn)?)
}

/// What a replay of the exception queue came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Records that went in this time (their rows marked `replayed`).
    pub applied: usize,
    /// Records still refused (their rows keep waiting, with this time's reason).
    pub still: usize,
}

/// Map again the open exceptions of `source` (after its map was fixed, or the record it
/// refers to arrived): those that go in now are written and their rows marked `replayed`, in
/// one transaction per record type; the others keep waiting with the reason of this try.
pub fn replay(
    ingest: &Ingest,
    source: &str,
    maps: &Maps,
    cx: &Context<'_>,
) -> Result<Replayed, StoreError> {
    let waiting = ingest.store.read(|c| open(c, source, 10_000))?;
    let writer = writer(ingest, source);
    let mut out = Replayed::default();
    let mut types: Vec<&str> = waiting.iter().map(|o| o.record_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    for record_type in types {
        let mut resources = Vec::new();
        let mut done = Vec::new();
        let mut still = Vec::new();
        for o in waiting.iter().filter(|o| o.record_type == record_type) {
            let record: Value = serde_json::from_str(&o.record).unwrap_or(Value::Null);
            match made(maps, record_type, &record, cx, &writer) {
                Ok(r) => {
                    resources.push(r);
                    done.push(o.seq);
                }
                Err(refused) => still.push((o.seq, refused)),
            }
        }
        let unit = ReplayUnit {
            done: &done,
            still: &still,
        };
        restate_all(&ingest.store, &writer, &resources, &unit)?;
        out.applied += done.len();
        out.still += still.len();
    }
    Ok(out)
}

/// A replay's own work in its transaction: the rows' new states.
struct ReplayUnit<'a> {
    done: &'a [i64],
    still: &'a [(i64, Refused)],
}

impl Unit for ReplayUnit<'_> {
    type Done = ();
    type Seen = ();

    fn look(&self, _: &mut Tx) -> Result<ControlFlow<(), ()>, StoreError> {
        Ok(ControlFlow::Continue(()))
    }

    fn finish(&self, tx: &mut Tx, _: (), _: Vec<String>) -> Result<(), StoreError> {
        let now = now_micros();
        for chunk in self.done.chunks(500) {
            diesel::update(ve::table.filter(ve::seq.eq_any(chunk)))
                .set((ve::status.eq("replayed"), ve::resolved_at.eq(now)))
                .execute(tx.conn)?;
        }
        for (seq, r) in self.still {
            diesel::update(ve::table.find(seq))
                .set((
                    ve::element.eq(&r.element),
                    ve::path.eq(&r.path),
                    ve::reason.eq(&r.reason),
                ))
                .execute(tx.conn)?;
        }
        Ok(())
    }
}

/// What each record would become, nothing written (`emrsync source test`): the resource,
/// accepted, or why not.
pub fn preview(
    ingest: &Ingest,
    source: &str,
    maps: &Maps,
    cx: &Context<'_>,
    record_type: &str,
    records: &[Value],
) -> Vec<Result<Value, Refused>> {
    let writer = writer(ingest, source);
    records
        .iter()
        .map(|r| made(maps, record_type, r, cx, &writer).map(|s| s.body))
        .collect()
}

/// `replay` of `source`'s exception queue with its maps, in this installation's context.
pub fn replay_source(
    ingest: &Ingest,
    source: &super::source::Source,
) -> Result<Replayed, StoreError> {
    in_context(&ingest.store, source.zone, |cx| {
        replay(ingest, &source.definition.name, &source.maps, cx)
    })?
}

/// Run `f` with the mapping context of this installation: resource ids under its id secret
/// (the one HL7v2's identifiers use), times without an offset in `zone`.
pub fn in_context<T>(
    store: &crate::store::Store,
    zone: crate::adapters::hl7v2::zone::Zone,
    f: impl FnOnce(&Context<'_>) -> T,
) -> Result<T, StoreError> {
    let secret = crate::adapters::hl7v2::identity::secret(store)?;
    let id_of = |t: &str, system: &str, value: &str| {
        crate::adapters::hl7v2::identity::stable_id(secret.as_bytes(), t, &[system, value])
    };
    Ok(f(&Context {
        id_of: &id_of,
        zone,
    }))
}
