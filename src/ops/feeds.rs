//! Feeds as the dashboard shows them: each HL7v2 sender (application and facility) and each
//! route target, with its volume per hour, its failures, and its latency against the service
//! levels: the one hospitals ask of an interface engine (95% of messages processed in under 5
//! seconds) and our own, tighter (99% under 1 second). Read from the HL7v2 archive and the
//! targets' queues in one grouped query each (on their time indexes), as counts per latency
//! bucket: a percentile is told as the bucket it falls in ("under 0.25 s"), exactly enough
//! to say whether an objective is met. A received message is timed from receipt to its first
//! ACK; one run again from the archive (a replay, a release) is not timed again, since its
//! wait was a person's: it counts among the failures while it waits.

use crate::fhir::resource::now_micros;
use crate::store::StoreError;
use crate::store::db::DbConnection;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use std::collections::BTreeMap;

/// Upper bounds of the latency buckets, seconds; a last bucket holds the rest.
pub const BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A service level: `share` of messages within `seconds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    pub name: &'static str,
    pub share: f64,
    pub seconds: f64,
}

/// The seed's and our own; each `seconds` is a bucket bound, so whether it is met is exact.
pub const OBJECTIVES: [Objective; 2] = [
    Objective {
        name: "hospital",
        share: 0.95,
        seconds: 5.0,
    },
    Objective {
        name: "emrsync",
        share: 0.99,
        seconds: 1.0,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Messages received from a sender.
    In,
    /// Messages sent to a route target.
    Out,
}

/// How a feed is doing, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Messages wait in its exception queue, or the hospital's service level is missed.
    Red,
    /// Our own objective is missed, or messages are held or still waiting.
    Amber,
    Green,
}

impl Health {
    pub fn word(self) -> &'static str {
        match self {
            Health::Red => "red",
            Health::Amber => "amber",
            Health::Green => "green",
        }
    }
}

/// One hour of a feed: messages and those that failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hour {
    pub total: i64,
    pub failed: i64,
}

#[derive(Debug, Clone)]
pub struct Feed {
    pub direction: Direction,
    /// `application@facility` of a sender; a target's name.
    pub name: String,
    pub total: i64,
    /// Failed now (the exception queue): not applied, or refused by the target.
    pub failed: i64,
    /// Held for review (in), or not yet sent (out).
    pub waiting: i64,
    /// Messages answered, by latency bucket (`BUCKETS`, and one more for the rest).
    pub latency: [i64; BUCKETS.len() + 1],
    /// The window's hours, oldest first.
    pub hours: Vec<Hour>,
}

impl Feed {
    /// Messages answered (timed) in the window.
    pub fn timed(&self) -> i64 {
        self.latency.iter().sum()
    }

    /// The share of timed messages answered within `seconds` (1 when none were).
    pub fn share_within(&self, seconds: f64) -> f64 {
        let timed = self.timed();
        if timed == 0 {
            return 1.0;
        }
        let within: i64 = (BUCKETS.iter().zip(&self.latency))
            .filter(|(b, _)| **b <= seconds)
            .map(|(_, n)| n)
            .sum();
        within as f64 / timed as f64
    }

    /// The bucket bound the `q` quantile falls under; `None` without timed messages, infinity
    /// past the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let timed = self.timed();
        if timed == 0 {
            return None;
        }
        let rank = (q * timed as f64).ceil().max(1.0) as i64;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }

    pub fn meets(&self, o: &Objective) -> bool {
        self.share_within(o.seconds) >= o.share
    }

    pub fn health(&self) -> Health {
        if self.failed > 0 || !self.meets(&OBJECTIVES[0]) {
            Health::Red
        } else if self.waiting > 0 || !self.meets(&OBJECTIVES[1]) {
            Health::Amber
        } else {
            Health::Green
        }
    }
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    feed: String,
    #[diesel(sql_type = BigInt)]
    hour: i64,
    /// 0 done, 1 failed, 2 waiting.
    #[diesel(sql_type = BigInt)]
    state: i64,
    /// A latency bucket; -1 when not answered.
    #[diesel(sql_type = BigInt)]
    bucket: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

const HOUR: i64 = 3_600_000_000;

/// `CASE` over `latency` (an SQL expression in microseconds) naming its bucket.
fn bucket_of(latency: &str) -> String {
    let mut out = String::from("CASE");
    for (i, b) in BUCKETS.iter().enumerate() {
        let micros = (b * 1e6) as i64;
        out.push_str(&format!(" WHEN {latency} <= {micros} THEN {i}"));
    }
    out.push_str(&format!(" ELSE {} END", BUCKETS.len()));
    out
}

fn load(c: &mut DbConnection, sql: &str) -> Result<Vec<Row>, StoreError> {
    use diesel::RunQueryDsl;
    Ok(match c {
        DbConnection::Sqlite(c) => diesel::sql_query(sql).load(c)?,
        DbConnection::Pg(c) => diesel::sql_query(sql).load(c)?,
    })
}

/// Every feed that had a message in the last `hours` hours (whole hours, so that the bars
/// are the clock's hours), the worst first.
pub fn read(c: &mut DbConnection, hours: i64) -> Result<Vec<Feed>, StoreError> {
    let first_hour = now_micros() / HOUR - (hours - 1);
    gather(c, first_hour * HOUR, first_hour, hours)
}

/// Every feed that had a message since `since` (microseconds), the worst first: what an
/// alert rule's window holds.
pub fn since(c: &mut DbConnection, since: i64) -> Result<Vec<Feed>, StoreError> {
    let first_hour = since / HOUR;
    gather(c, since, first_hour, now_micros() / HOUR - first_hour + 1)
}

fn gather(
    c: &mut DbConnection,
    since: i64,
    first_hour: i64,
    hours: i64,
) -> Result<Vec<Feed>, StoreError> {
    // the numbers are ours (no input reaches this text)
    let inbound = format!(
        "SELECT sending_application || '@' || sending_facility AS feed, \
         CAST(received_at / {HOUR} AS BIGINT) AS hour, \
         CAST(CASE WHEN status IN ('failed', 'rejected') THEN 1 WHEN status = 'held' THEN 2 \
         ELSE 0 END AS BIGINT) AS state, \
         CAST(CASE WHEN acked_at IS NULL THEN -1 ELSE {} END AS BIGINT) AS bucket, \
         COUNT(*) AS n FROM hl7v2_messages WHERE received_at >= {since} GROUP BY 1, 2, 3, 4",
        bucket_of("acked_at - received_at")
    );
    let outbound = format!(
        "SELECT target AS feed, CAST(created_at / {HOUR} AS BIGINT) AS hour, \
         CAST(CASE WHEN status = 'failed' THEN 1 WHEN status = 'pending' THEN 2 ELSE 0 END \
         AS BIGINT) AS state, \
         CAST(CASE WHEN sent_at IS NULL THEN -1 ELSE {} END AS BIGINT) AS bucket, \
         COUNT(*) AS n FROM route_messages WHERE created_at >= {since} GROUP BY 1, 2, 3, 4",
        bucket_of("sent_at - created_at")
    );
    let mut feeds: BTreeMap<(u8, String), Feed> = BTreeMap::new();
    for (direction, sql) in [(Direction::In, inbound), (Direction::Out, outbound)] {
        for row in load(c, &sql)? {
            let key = (u8::from(direction == Direction::Out), row.feed.clone());
            let feed = feeds.entry(key).or_insert_with(|| Feed {
                direction,
                name: row.feed.clone(),
                total: 0,
                failed: 0,
                waiting: 0,
                latency: [0; BUCKETS.len() + 1],
                hours: vec![Hour::default(); hours as usize],
            });
            feed.total += row.n;
            let hour = usize::try_from(row.hour - first_hour).ok();
            if let Some(h) = hour.and_then(|h| feed.hours.get_mut(h)) {
                h.total += row.n;
                h.failed += if row.state == 1 { row.n } else { 0 };
            }
            match row.state {
                1 => feed.failed += row.n,
                2 => feed.waiting += row.n,
                _ => {}
            }
            if let Some(b) = usize::try_from(row.bucket)
                .ok()
                .and_then(|b| feed.latency.get_mut(b))
            {
                // a message answered (even with an AE) was answered in this time
                *b += row.n;
            }
        }
    }
    let mut out: Vec<Feed> = feeds.into_values().collect();
    out.sort_by(|a, b| a.health().cmp(&b.health()).then(b.total.cmp(&a.total)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(latency: &[(usize, i64)]) -> Feed {
        let mut f = Feed {
            direction: Direction::In,
            name: "LAB@HOSP".into(),
            total: 0,
            failed: 0,
            waiting: 0,
            latency: [0; BUCKETS.len() + 1],
            hours: Vec::new(),
        };
        for (b, n) in latency {
            f.latency[*b] = *n;
            f.total += n;
        }
        f
    }

    #[test]
    fn an_objective_is_met_by_the_share_within_its_bound() {
        // 96 under 0.1 s, 4 at 10 s: the hospital's 95% in 5 s holds, our 99% in 1 s does not
        let f = feed(&[(3, 96), (9, 4)]);
        assert!(f.meets(&OBJECTIVES[0]));
        assert!(!f.meets(&OBJECTIVES[1]));
        assert_eq!(f.health(), Health::Amber);
        assert_eq!(f.quantile(0.5), Some(0.1));
        assert_eq!(f.quantile(0.99), Some(10.0));
        let slow = feed(&[(3, 90), (12, 10)]);
        assert_eq!(slow.health(), Health::Red);
        assert_eq!(slow.quantile(0.95), Some(f64::INFINITY));
    }

    #[test]
    fn a_feed_with_failures_is_red_and_one_without_messages_green() {
        let mut f = feed(&[(0, 10)]);
        assert_eq!(f.health(), Health::Green);
        f.failed = 1;
        assert_eq!(f.health(), Health::Red);
        assert_eq!(feed(&[]).quantile(0.5), None);
        assert_eq!(feed(&[]).health(), Health::Green);
    }
}
