//! Whether each rule's condition holds now, and for which subjects: the feeds (from the
//! HL7v2 archive and the targets' queues, `ops::feeds`), the queues (`ops::queues`) and the
//! clients' reads (the audit trail).

use super::rules::{Condition, Rule, Severity};
use crate::fhir::resource::now_micros;
use crate::ops::feeds::{self, Direction, Feed};
use crate::ops::queues::Queues;
use crate::store::StoreError;
use crate::store::db::DbConnection;
use crate::store::schema::audit_blocks as b;
use chrono::Timelike;
use diesel::prelude::*;
use std::collections::HashMap;

/// A rule's condition holding for one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub rule: String,
    /// `feed LAB@HOSP`, `queue hl7v2-failed`, `target lab-emr`, `agent client x`.
    pub subject: String,
    pub severity: Severity,
    /// What was seen, in words.
    pub detail: String,
}

/// Accesses that read a patient's record (not writes: a feed pushing data is no leak).
const READS: [&str; 8] = [
    "read",
    "vread",
    "history-instance",
    "history-type",
    "search-type",
    "search-system",
    "search-compartment",
    "operation",
];

/// What an evaluation keeps between turns: each client's baseline of patients read per
/// window, read again every hour (it spans days of the audit trail).
#[derive(Default)]
pub struct Memory {
    baselines: HashMap<(i64, i64), (i64, HashMap<String, f64>)>,
}

const MINUTE: i64 = 60_000_000;

/// Every rule's firings now.
pub fn all(
    c: &mut DbConnection,
    rules: &[Rule],
    queues: &Queues,
    memory: &mut Memory,
) -> Result<Vec<Firing>, StoreError> {
    let now = now_micros();
    let mut out = Vec::new();
    let mut windows: HashMap<i64, Vec<Feed>> = HashMap::new();
    let mut reads: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
    for rule in rules {
        let fire = |subject: String, detail: String| Firing {
            rule: rule.name.clone(),
            subject,
            severity: rule.severity,
            detail,
        };
        let matches = |want: &str, name: &str| want == "*" || want == name;
        match &rule.condition {
            Condition::Latency {
                feed,
                share,
                seconds,
                minutes,
                min_messages,
            } => {
                let fs = feeds_since(c, &mut windows, now - minutes * MINUTE)?;
                for f in fs.iter().filter(|f| matches(feed, &f.name)) {
                    let timed = f.timed();
                    let within = f.share_within(*seconds);
                    if timed >= *min_messages && within < *share {
                        out.push(fire(
                            format!("feed {}", f.name),
                            format!(
                                "{:.1}% of {timed} messages answered within {seconds} s over the last {minutes} min (the level: {:.1}%)",
                                within * 100.0,
                                share * 100.0
                            ),
                        ));
                    }
                }
            }
            Condition::ErrorRate {
                feed,
                max_share,
                minutes,
                min_messages,
            } => {
                let fs = feeds_since(c, &mut windows, now - minutes * MINUTE)?;
                for f in fs.iter().filter(|f| matches(feed, &f.name)) {
                    let rate = f.failed as f64 / f.total.max(1) as f64;
                    if f.total >= *min_messages && rate > *max_share {
                        let what = match f.direction {
                            Direction::In => "not applied",
                            Direction::Out => "refused by the target",
                        };
                        out.push(fire(
                            format!("feed {}", f.name),
                            format!(
                                "{} of {} messages {what} over the last {minutes} min ({:.1}%, at most {:.1}%)",
                                f.failed,
                                f.total,
                                rate * 100.0,
                                max_share * 100.0
                            ),
                        ));
                    }
                }
            }
            Condition::QueueAge { queue, seconds } => {
                let waiting: Vec<(String, i64, f64)> = match queue.as_str() {
                    "hl7v2-failed" => {
                        vec![(queue.clone(), queues.hl7v2_failed, queues.hl7v2_failed_age)]
                    }
                    "outbox-dispatch" => vec![(
                        queue.clone(),
                        queues.dispatch.waiting,
                        queues.dispatch.oldest_age,
                    )],
                    "outbox-route" => {
                        vec![(queue.clone(), queues.route.waiting, queues.route.oldest_age)]
                    }
                    q if q.starts_with("vendor:") => {
                        let want = &q["vendor:".len()..];
                        (queues.vendors.iter())
                            .filter(|(source, _)| matches(want, source))
                            .map(|(source, d)| {
                                (format!("vendor:{source}"), d.waiting, d.oldest_age)
                            })
                            .collect()
                    }
                    // nothing waits for a stream this process does not publish
                    "outbox-stream" => (queues.stream.iter())
                        .map(|d| (queue.clone(), d.waiting, d.oldest_age))
                        .collect(),
                    q => {
                        let want = q.strip_prefix("target:").unwrap_or(q);
                        (queues.targets.iter())
                            .filter(|t| matches(want, &t.name))
                            .map(|t| {
                                (
                                    format!("target:{}", t.name),
                                    t.pending.waiting,
                                    t.pending.oldest_age,
                                )
                            })
                            .collect()
                    }
                };
                for (name, n, age) in waiting {
                    if n > 0 && age > *seconds {
                        out.push(fire(
                            format!("queue {name}"),
                            format!("{n} waiting, the oldest for {age:.0} s (at most {seconds} s)"),
                        ));
                    }
                }
            }
            Condition::TargetDown { target, minutes } => {
                for t in queues.targets.iter().filter(|t| matches(target, &t.name)) {
                    let Some(error) = &t.retrying else { continue };
                    if t.pending.oldest_age > (*minutes * 60) as f64 {
                        out.push(fire(
                            format!("target {}", t.name),
                            format!(
                                "has taken nothing for {:.0} min, {} messages waiting: {error}",
                                t.pending.oldest_age / 60.0,
                                t.pending.waiting
                            ),
                        ));
                    }
                }
            }
            Condition::Reads {
                agent,
                patients,
                minutes,
                baseline_factor,
                baseline_days,
            } => {
                let read = read_since(c, &mut reads, now - minutes * MINUTE, now)?;
                let baseline = match *baseline_days > 0 && *baseline_factor > 0.0 {
                    true => Some(memory.baseline(c, (*baseline_days, *minutes), now)?),
                    false => None,
                };
                for (who, n) in read.iter().filter(|(who, _)| matches(agent, who)) {
                    let usual = baseline
                        .as_ref()
                        .and_then(|b| b.get(who))
                        .copied()
                        .unwrap_or(0.0);
                    if *n >= *patients
                        && (baseline.is_none() || *n as f64 > baseline_factor * usual)
                    {
                        let since = match baseline {
                            Some(_) => format!(
                                ", {usual:.1} in such a stretch on average over {baseline_days} days"
                            ),
                            None => String::new(),
                        };
                        out.push(fire(
                            format!("agent {who}"),
                            format!("read {n} patients' records in the last {minutes} min{since}"),
                        ));
                    }
                }
            }
            Condition::NightReads {
                agent,
                patients,
                minutes,
                from_hour,
                to_hour,
                time_zone,
            } => {
                let Ok(zone) = time_zone.parse::<chrono_tz::Tz>() else {
                    continue;
                };
                let hour = chrono::Utc::now().with_timezone(&zone).hour();
                let night = match from_hour <= to_hour {
                    true => (*from_hour..*to_hour).contains(&hour),
                    false => hour >= *from_hour || hour < *to_hour,
                };
                if !night {
                    continue;
                }
                let read = read_since(c, &mut reads, now - minutes * MINUTE, now)?;
                for (who, n) in read.iter().filter(|(who, _)| matches(agent, who)) {
                    if *n >= *patients {
                        out.push(fire(
                            format!("agent {who}"),
                            format!("read {n} patients' records in the last {minutes} min, at night ({hour}:00 {time_zone})"),
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The feeds of a window, read once per evaluation for every rule of that window.
fn feeds_since<'a>(
    c: &mut DbConnection,
    windows: &'a mut HashMap<i64, Vec<Feed>>,
    since: i64,
) -> Result<&'a Vec<Feed>, StoreError> {
    // whole minutes, so that rules of one window share one reading
    let key = since / MINUTE;
    Ok(match windows.entry(key) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => e.insert(feeds::since(c, key * MINUTE)?),
    })
}

/// The patients each client read since `from`, read once per evaluation for every rule of
/// that window (the audit trail is the largest table: one scan, not one per rule).
fn read_since<'a>(
    c: &mut DbConnection,
    reads: &'a mut HashMap<i64, Vec<(String, i64)>>,
    from: i64,
    now: i64,
) -> Result<&'a Vec<(String, i64)>, StoreError> {
    Ok(match reads.entry(from / MINUTE) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(patients_read(c, (from / MINUTE) * MINUTE, now)?)
        }
    })
}

/// How many patients' records each client read in `[from, to)`: the entries of the blocks
/// whose span meets it (the trail's blocks are read once per evaluation and window).
fn patients_read(
    c: &mut DbConnection,
    from: i64,
    to: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    use crate::store::audit::block;
    let mut seen: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
    let mut after = i64::MIN;
    loop {
        let page: Vec<block::Loaded> = b::table
            .filter(b::seq.gt(after))
            .filter(b::last_at.ge(from))
            .filter(b::first_at.lt(to))
            .order(b::seq.asc())
            .limit(64)
            .select(block::loaded())
            .load(c)?;
        let Some(last) = page.last() else { break };
        after = last.0;
        for e in page.into_iter().flat_map(block::rows).map(|r| r.entry) {
            let a_read = e.kind == crate::store::audit::kind::REST
                && e.outcome == "success"
                && READS.contains(&e.action.as_str())
                && (from..to).contains(&e.recorded_at);
            if let (true, Some(p)) = (a_read, e.patient) {
                seen.entry(e.actor).or_default().insert(p);
            }
        }
    }
    Ok(seen
        .into_iter()
        .map(|(actor, patients)| (actor, patients.len() as i64))
        .collect())
}

impl Memory {
    /// Each client's patients read per `minutes` on average over the `days` before now,
    /// read again when an hour old.
    fn baseline(
        &mut self,
        c: &mut DbConnection,
        (days, minutes): (i64, i64),
        now: i64,
    ) -> Result<HashMap<String, f64>, StoreError> {
        let key = (days, minutes);
        if let Some((at, b)) = self.baselines.get(&key)
            && now - at < 60 * MINUTE
        {
            return Ok(b.clone());
        }
        let windows = (days * 24 * 60) as f64 / minutes as f64;
        // distinct over the whole stretch: a floor of the per-window figure (a client that
        // reads the same patients every hour is not counted again each hour)
        let read = patients_read(c, now - days * 24 * 60 * MINUTE, now - minutes * MINUTE)?;
        let b: HashMap<String, f64> = read
            .into_iter()
            .map(|(who, n)| (who, n as f64 / windows))
            .collect();
        self.baselines.insert(key, (now, b.clone()));
        Ok(b)
    }
}
