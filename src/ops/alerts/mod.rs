//! Alerts: rules as data (`rules`), evaluated every `--alert-interval-secs` (`evaluate`). A
//! rule that starts to hold for a subject raises one alert: a row of `alerts`, a log line,
//! and a FHIR Communication written on the ingest path in the same transaction, which the
//! SubscriptionTopic `ops-alert` sends to its subscribers, as any clinical event. When the
//! condition no longer holds, the alert is resolved: the row says so and the Communication is
//! `completed` (its subscribers are told again). One alert is open at most per rule and
//! subject, also when several processes share a PostgreSQL (a unique index).

pub mod evaluate;
pub mod rules;

use crate::fhir::resource::{instant, now_micros};
use crate::ingest::restate::{self, Stated, Unit};
use crate::ingest::{Channel, Ingest, Source};
use crate::store::db::DbConnection;
use crate::store::schema::{alert_rules as ar, alerts as al};
use crate::store::{Actor, StoreError, Tx};
use diesel::prelude::*;
use evaluate::Firing;
use rules::Rules;
use serde::Serialize;
use serde_json::{Value, json};
use std::ops::ControlFlow;
use std::time::Duration;

/// The category every alert's Communication carries (what the `ops-alert` topic selects).
pub const CATEGORY_SYSTEM: &str = "http://emrsync.org/fhir/CodeSystem/ops";
pub const CATEGORY_CODE: &str = "alert";
/// The identifier system of an alert's rule and subject.
const RULE_SYSTEM: &str = "http://emrsync.org/fhir/alert";

/// One alert, as the dashboard and `GET /admin/alerts` show it.
#[derive(Debug, Clone, Serialize, Queryable, Selectable)]
#[diesel(table_name = al)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: String,
    pub rule: String,
    pub subject: String,
    pub severity: String,
    /// `firing` or `resolved`.
    pub status: String,
    #[serde(serialize_with = "crate::fhir::resource::serialize_instant")]
    pub raised_at: i64,
    #[serde(serialize_with = "crate::fhir::resource::serialize_instant_opt")]
    pub resolved_at: Option<i64>,
    pub detail: String,
}

/// The rules in force: the latest set, else the shipped ones (version 0).
pub fn current_rules(conn: &mut DbConnection) -> Result<(i64, Rules), StoreError> {
    let row: Option<(i64, String)> = ar::table
        .order(ar::version.desc())
        .limit(1)
        .select((ar::version, ar::config))
        .get_result(conn)
        .optional()?;
    match row {
        // kept after they were checked: one that no longer reads (a rule's shape changed) is
        // said, never taken for no rules at all
        Some((v, text)) => serde_json::from_str(&text).map(|r| (v, r)).map_err(|e| {
            StoreError::Database(format!(
                "the alert rules kept (version {v}) do not read: {e}"
            ))
        }),
        None => Ok((0, rules::shipped())),
    }
}

/// Keep `rules` as the new version, set by `actor`; its number.
pub fn set_rules(conn: &mut DbConnection, rules: &Rules, actor: &str) -> Result<i64, StoreError> {
    let (version, _) = current_rules(conn)?;
    let text = serde_json::to_string(rules).map_err(|e| StoreError::Database(e.to_string()))?;
    diesel::insert_into(ar::table)
        .values((
            ar::version.eq(version + 1),
            ar::recorded_at.eq(now_micros()),
            ar::actor.eq(actor),
            ar::config.eq(text),
        ))
        .execute(conn)?;
    Ok(version + 1)
}

/// Alerts with `status` (all when `None`), newest first.
pub fn list(
    conn: &mut DbConnection,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<Alert>, StoreError> {
    let mut q = al::table.into_boxed();
    if let Some(s) = status {
        q = q.filter(al::status.eq(s.to_string()));
    }
    Ok(q.order(al::raised_at.desc())
        .limit(limit)
        .select(Alert::as_select())
        .load(conn)?)
}

/// Evaluate the rules every `every`, for ever, raising and resolving alerts.
pub async fn run(ingest: Ingest, every: Duration) {
    let mut memory = evaluate::Memory::default();
    loop {
        tokio::time::sleep(every).await;
        let ingest2 = ingest.clone();
        let turn = tokio::task::spawn_blocking(move || {
            let r = turn(&ingest2, &mut memory);
            (memory, r)
        })
        .await;
        match turn {
            Ok((m, r)) => {
                memory = m;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "alert rules could not be evaluated; next turn");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the alert evaluation failed");
                memory = evaluate::Memory::default();
            }
        }
    }
}

/// One evaluation: raise what fires and is not open, resolve what is open and no longer fires.
pub fn turn(ingest: &Ingest, memory: &mut evaluate::Memory) -> Result<(), StoreError> {
    let store = &ingest.store;
    let (_, rules) = store.read(current_rules)?;
    let (firing, open) = store.read(|c| {
        let queues = crate::ops::queues::read(c, store.publishing())?;
        let firing = evaluate::all(c, &rules.rules, &queues, memory)?;
        Ok((firing, list(c, Some("firing"), 10_000)?))
    })?;
    for f in &firing {
        match open
            .iter()
            .find(|a| a.rule == f.rule && a.subject == f.subject)
        {
            Some(_) => {}
            None => raise(ingest, f)?,
        }
    }
    for a in &open {
        if !firing
            .iter()
            .any(|f| f.rule == a.rule && f.subject == a.subject)
        {
            resolve(ingest, a)?;
        }
    }
    Ok(())
}

/// The writer of alerts: the server's operations, not a source any rule holds back.
fn writer(ingest: &Ingest) -> crate::ingest::Writer {
    ingest.writer(
        std::sync::Arc::new(crate::auth::Grant::unrestricted()),
        Actor::Named("emrsync alerts".into()),
        Source {
            channel: Channel::Ops,
            system: "emrsync".into(),
            reviewed_by: None,
        },
        format!("alert-{}", uuid::Uuid::now_v7()),
    )
}

/// The Communication that tells an alert's subscribers.
fn communication(a: &Alert) -> Value {
    let firing = a.status == "firing";
    let mut c = json!({
        "resourceType": "Communication",
        "id": a.id,
        "identifier": [{"system": RULE_SYSTEM, "value": format!("{}|{}", a.rule, a.subject)}],
        "status": if firing { "in-progress" } else { "completed" },
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": CATEGORY_CODE, "display": "Operations alert"}]}],
        "priority": if a.severity == "critical" { "urgent" } else { "asap" },
        "topic": {"text": format!("{}: {}", a.rule, a.subject)},
        "sent": instant(a.raised_at),
        "payload": [{"contentString": a.detail}],
    });
    if let Some(at) = a.resolved_at {
        c["note"] = json!([{"text": format!("resolved at {}", instant(at))}]);
    }
    c
}

/// The alert row written in the Communication's transaction.
struct Keep(Alert);

impl Unit for Keep {
    type Done = ();
    type Seen = ();

    fn look(&self, _tx: &mut Tx) -> Result<ControlFlow<(), ()>, StoreError> {
        Ok(ControlFlow::Continue(()))
    }

    fn finish(&self, tx: &mut Tx, _: (), _: Vec<String>) -> Result<(), StoreError> {
        let a = &self.0;
        if a.status == "firing" {
            diesel::insert_into(al::table)
                .values((
                    al::id.eq(&a.id),
                    al::rule.eq(&a.rule),
                    al::subject.eq(&a.subject),
                    al::severity.eq(&a.severity),
                    al::status.eq(&a.status),
                    al::raised_at.eq(a.raised_at),
                    al::detail.eq(&a.detail),
                ))
                .execute(tx.conn)?;
        } else {
            diesel::update(al::table.find(&a.id))
                .set((al::status.eq(&a.status), al::resolved_at.eq(a.resolved_at)))
                .execute(tx.conn)?;
        }
        Ok(())
    }
}

fn write(ingest: &Ingest, a: Alert) -> Result<(), StoreError> {
    let w = writer(ingest);
    let body = w
        .accept(communication(&a), "Communication", false)
        .map_err(|e| StoreError::Database(format!("an alert's Communication: {e}")))?
        .resource;
    let stated = [Stated {
        rtype: "Communication",
        id: a.id.clone(),
        body,
    }];
    restate::restate_all(&ingest.store, &w, &stated, &Keep(a))
}

fn raise(ingest: &Ingest, f: &Firing) -> Result<(), StoreError> {
    let a = Alert {
        id: uuid::Uuid::now_v7().to_string(),
        rule: f.rule.clone(),
        subject: f.subject.clone(),
        severity: f.severity.word().into(),
        status: "firing".into(),
        raised_at: now_micros(),
        resolved_at: None,
        detail: f.detail.clone(),
    };
    let (rule, subject, detail) = (a.rule.clone(), a.subject.clone(), a.detail.clone());
    match write(ingest, a) {
        Ok(()) => {
            match f.severity {
                rules::Severity::Critical => tracing::error!(rule, subject, detail, "alert raised"),
                rules::Severity::Warning => tracing::warn!(rule, subject, detail, "alert raised"),
            }
            Ok(())
        }
        // another process raised it first (one open per rule and subject)
        Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn resolve(ingest: &Ingest, open: &Alert) -> Result<(), StoreError> {
    let mut a = open.clone();
    a.status = "resolved".into();
    a.resolved_at = Some(now_micros());
    write(ingest, a)?;
    tracing::info!(rule = open.rule, subject = open.subject, "alert resolved");
    Ok(())
}
