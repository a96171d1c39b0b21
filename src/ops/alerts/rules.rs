//! Alert rules as data: what the integration team writes (`PUT /admin/alerts/rules`, or the
//! shipped `capability/alerts/default-rules.json` until they do), checked before it is kept.

use serde::{Deserialize, Serialize};

/// How loud an alert is: a `critical` one is a Communication of priority `urgent`, a
/// `warning` of priority `asap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    #[default]
    Warning,
}

impl Severity {
    pub fn word(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }
}

/// One rule: a name (unique), how loud, and its condition, written as one object
/// (`{"name", "severity", "kind", ...the condition's fields}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub name: String,
    pub severity: Severity,
    #[serde(flatten)]
    pub condition: Condition,
}

impl<'de> Deserialize<'de> for Rule {
    /// Read as its head and its condition from the one object (serde's `flatten` does not
    /// read numbers into an internally tagged enum).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rule, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        struct Head {
            name: String,
            #[serde(default)]
            severity: Severity,
        }
        let v = serde_json::Value::deserialize(d)?;
        let head = Head::deserialize(&v).map_err(D::Error::custom)?;
        let condition = Condition::deserialize(&v).map_err(D::Error::custom)?;
        Ok(Rule {
            name: head.name,
            severity: head.severity,
            condition,
        })
    }
}

/// What makes a rule fire; each names its subjects (a feed, a queue, a target, a client) or
/// `*` for every one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Condition {
    /// A feed answered less than `share` of its messages within `seconds` over the last
    /// `minutes` (with at least `min_messages` timed).
    Latency {
        feed: String,
        share: f64,
        seconds: f64,
        minutes: i64,
        #[serde(default = "one")]
        min_messages: i64,
    },
    /// More than `max_share` of a feed's messages failed over the last `minutes`.
    ErrorRate {
        feed: String,
        max_share: f64,
        minutes: i64,
        #[serde(default = "one")]
        min_messages: i64,
    },
    /// The oldest of a queue has waited more than `seconds`: `hl7v2-failed` (the exception
    /// queue), `outbox-dispatch`, `outbox-route`, `outbox-stream` (changes the event stream's
    /// broker has not taken), `target:NAME` or `target:*`, `vendor:SOURCE` or `vendor:*` (a
    /// vendor source's exception queue).
    QueueAge { queue: String, seconds: f64 },
    /// A target has not taken its next message for `minutes` (it is being retried).
    TargetDown { target: String, minutes: i64 },
    /// A client read more than `patients` patients' records in the last `minutes`, and more
    /// than `baseline_factor` times what it reads in such a stretch over `baseline_days`.
    Reads {
        agent: String,
        patients: i64,
        minutes: i64,
        #[serde(default)]
        baseline_factor: f64,
        #[serde(default)]
        baseline_days: i64,
    },
    /// A client read more than `patients` patients' records in the last `minutes`, at night:
    /// between `from_hour` and `to_hour` in `time_zone`.
    NightReads {
        agent: String,
        patients: i64,
        minutes: i64,
        from_hour: u32,
        to_hour: u32,
        #[serde(default = "utc")]
        time_zone: String,
    },
}

fn one() -> i64 {
    1
}

fn utc() -> String {
    "UTC".into()
}

/// A document of rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub rules: Vec<Rule>,
}

/// The rules a server has until someone sets its own.
pub fn shipped() -> Rules {
    serde_json::from_str(include_str!(
        "../../../capability/alerts/default-rules.json"
    ))
    .expect("the shipped alert rules parse")
}

impl Rules {
    /// Read and check a document; every problem found, in words.
    pub fn parse(text: &str) -> Result<Rules, Vec<String>> {
        let rules: Rules = serde_json::from_str(text).map_err(|e| vec![e.to_string()])?;
        let problems = rules.problems();
        match problems.is_empty() {
            true => Ok(rules),
            false => Err(problems),
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        if self.rules.len() > 200 {
            out.push("at most 200 rules".into());
        }
        for r in &self.rules {
            let at = &r.name;
            if r.name.trim().is_empty() || r.name.len() > 64 {
                out.push(format!("a rule's name is 1 to 64 characters: '{at}'"));
            }
            if !names.insert(r.name.as_str()) {
                out.push(format!("{at}: two rules have this name"));
            }
            let window = |m: i64, out: &mut Vec<String>| {
                if !(1..=10_080).contains(&m) {
                    out.push(format!("{at}: minutes is 1 to 10080 (a week)"));
                }
            };
            match &r.condition {
                Condition::Latency {
                    share,
                    seconds,
                    minutes,
                    ..
                } => {
                    window(*minutes, &mut out);
                    if !(0.0..=1.0).contains(share) {
                        out.push(format!("{at}: share is between 0 and 1"));
                    }
                    if !crate::ops::feeds::BUCKETS.contains(seconds) {
                        out.push(format!(
                            "{at}: seconds is one of the latency bounds {:?}",
                            crate::ops::feeds::BUCKETS
                        ));
                    }
                }
                Condition::ErrorRate {
                    max_share, minutes, ..
                } => {
                    window(*minutes, &mut out);
                    if !(0.0..=1.0).contains(max_share) {
                        out.push(format!("{at}: maxShare is between 0 and 1"));
                    }
                }
                Condition::QueueAge { queue, seconds } => {
                    let known = matches!(
                        queue.as_str(),
                        "hl7v2-failed" | "outbox-dispatch" | "outbox-route" | "outbox-stream"
                    ) || ["target:", "vendor:"]
                        .iter()
                        .any(|p| queue.strip_prefix(p).is_some_and(|t| !t.is_empty()));
                    if !known {
                        out.push(format!("{at}: queue is hl7v2-failed, outbox-dispatch, outbox-route, outbox-stream, target:NAME (or target:*) or vendor:SOURCE (or vendor:*)"));
                    }
                    if *seconds < 0.0 {
                        out.push(format!("{at}: seconds is not negative"));
                    }
                }
                Condition::TargetDown { minutes, .. } => window(*minutes, &mut out),
                Condition::Reads {
                    patients,
                    minutes,
                    baseline_days,
                    baseline_factor,
                    ..
                } => {
                    window(*minutes, &mut out);
                    if *patients < 1 {
                        out.push(format!("{at}: patients is at least 1"));
                    }
                    if !(0..=90).contains(baseline_days) || *baseline_factor < 0.0 {
                        out.push(format!(
                            "{at}: baselineDays is 0 to 90, baselineFactor not negative"
                        ));
                    }
                }
                Condition::NightReads {
                    patients,
                    minutes,
                    from_hour,
                    to_hour,
                    time_zone,
                    ..
                } => {
                    window(*minutes, &mut out);
                    if *patients < 1 {
                        out.push(format!("{at}: patients is at least 1"));
                    }
                    if *from_hour > 23 || *to_hour > 23 {
                        out.push(format!("{at}: fromHour and toHour are 0 to 23"));
                    }
                    if time_zone.parse::<chrono_tz::Tz>().is_err() {
                        out.push(format!("{at}: unknown time zone '{time_zone}'"));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_rules_are_valid() {
        let text = include_str!("../../../capability/alerts/default-rules.json");
        assert_eq!(Rules::parse(text).unwrap(), shipped());
        assert!(shipped().rules.len() >= 6);
    }

    #[test]
    fn a_wrong_rule_is_told_not_kept() {
        let bad = r#"{"rules": [
            {"name": "a", "kind": "latency", "feed": "*", "share": 2, "seconds": 3, "minutes": 0},
            {"name": "a", "kind": "queue-age", "queue": "nowhere", "seconds": 1},
            {"name": "n", "kind": "night-reads", "agent": "*", "patients": 5, "minutes": 60,
             "fromHour": 22, "toHour": 6, "timeZone": "Mars/Olympus"}
        ]}"#;
        let problems = Rules::parse(bad).unwrap_err();
        for want in [
            "share",
            "latency bounds",
            "minutes",
            "two rules",
            "queue is",
            "time zone",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "{want}: {problems:?}"
            );
        }
        assert!(Rules::parse(r#"{"rules": [{"name": "x", "kind": "weather"}]}"#).is_err());
        assert!(Rules::parse(r#"{"rules": [], "extra": 1}"#).is_err());
    }
}
