//! The integration team's routes, as data: which target systems exist, how each is reached,
//! which events it receives (topics and filters, as Subscriptions name them), in which
//! format, and by which identifier system it knows a patient. Read from JSON (a file under
//! `capability/routes/`, or `PUT /admin/routes`) and checked whole before any of it is used.

pub use super::channel::{Channel, Header, MllpTls, OAuth2};
use crate::adapters::hl7v2::message::Delimiters;
use crate::subscriptions::subscription::check_filter;
use crate::subscriptions::topics;
use serde::{Deserialize, Serialize};

/// The whole configuration: every target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routes {
    #[serde(default)]
    pub targets: Vec<Target>,
    /// Which source is the source of truth of which data (`truth`).
    #[serde(default)]
    pub truth: Vec<Domain>,
}

/// A data domain and its source of truth: only its owners change what it covers; another
/// source's change to it is refused (409 to a REST client, AE to an HL7v2 sender, which keeps
/// the message in the exception queue for review and replay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// Its name, in refusals: `adt`, `results`, `medications`, `allergies`...
    pub domain: String,
    /// The resource types it covers.
    pub resources: Vec<String>,
    /// The top-level elements it covers (`name`, `birthDate`...); empty: all of them.
    #[serde(default)]
    pub elements: Vec<String>,
    /// The sources that own it, by name (`hl7v2 APP@FACILITY`, `client ID`).
    pub owners: Vec<String>,
    /// Whether another source may create what does not exist yet (a lab's result naming a
    /// patient the registration system has not sent): what it creates is then the owners' to
    /// change. Default true.
    #[serde(default = "yes")]
    pub others_may_create: bool,
    /// What becomes of a change by another source: refused (a NAK, a 409), or, for a feed's
    /// message, held for a person to review (`POST /admin/hl7v2/messages/{id}/release` applies
    /// it).
    #[serde(default)]
    pub on_conflict: OnConflict,
}

/// What a source-of-truth rule does with a change it does not admit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnConflict {
    #[default]
    Refuse,
    Hold,
}

/// One target system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Its name: in the queue, the exception queue, metrics and logs.
    pub name: String,
    /// Whether it is sent to; a disabled target's events are not queued.
    #[serde(default = "yes")]
    pub enabled: bool,
    pub channel: Channel,
    pub format: Format,
    /// The events it receives: a change reaches it when one of these fires for it.
    pub events: Vec<Event>,
    /// The identifier system of the MRN this target knows patients by: that identifier is
    /// sent first (taken from another record of the same person when the MPI links one).
    #[serde(default)]
    pub identifier_system: Option<String>,
    /// The names its own writes reach emrsync under (an HL7v2 sender's `hl7v2 APP@FACILITY`,
    /// a REST client's id): a change it made is never sent back to it.
    #[serde(default)]
    pub origins: Vec<String>,
    /// ConceptMaps (canonical URLs) from this server's codes to the target's own: every coding
    /// it is sent that one of them maps gets the target's code first (the original kept after
    /// it, as the alternate).
    #[serde(default)]
    pub value_maps: Vec<String>,
}

fn yes() -> bool {
    true
}

/// What a target is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Format {
    /// HL7v2 messages of this version, from and to these applications (MSH-3 to MSH-6).
    Hl7v2 {
        #[serde(default = "v251")]
        version: String,
        #[serde(default = "emrsync")]
        sending_application: String,
        #[serde(default)]
        sending_facility: String,
        #[serde(default)]
        receiving_application: String,
        #[serde(default)]
        receiving_facility: String,
        /// The message orders of services are sent as.
        #[serde(default)]
        orders: Orders,
        /// How results are cut into ORU messages.
        #[serde(default)]
        results: Results,
        /// The delimiters, as MSH-1 and MSH-2 write them.
        #[serde(default = "standard_encoding")]
        encoding: String,
    },
    /// FHIR R4: the changed resources (with those they refer to) as a transaction of
    /// conditional updates by identifier, so the target keeps its own ids.
    Fhir,
    /// A Subscriptions Backport notification Bundle (`history`, SubscriptionStatus first), with
    /// as much of each changed resource as `content` says, as a rest-hook Subscription's.
    Notification {
        #[serde(default)]
        content: Content,
    },
}

/// How much of a change a notification carries (a Subscription's payload content).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Content {
    Empty,
    IdOnly,
    #[default]
    FullResource,
}

/// The HL7v2 message orders of services are sent as: ORM^O01 (v2.3 to v2.4, and most
/// installed interfaces), or OML^O21, which replaces it from v2.5 on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Orders {
    #[default]
    #[serde(rename = "ORM^O01")]
    Orm,
    #[serde(rename = "OML^O21")]
    Oml,
}

impl Orders {
    /// MSH-9 of the message: code, trigger, structure.
    pub fn kind(self) -> &'static [&'static str] {
        match self {
            Orders::Orm => &["ORM", "O01", "ORM_O01"],
            Orders::Oml => &["OML", "O21", "OML_O21"],
        }
    }
}

/// How results are cut into ORU^R01 messages: all the reports of one write in one message
/// (the default), one message per report, or one per result (a target that files each
/// observation by itself; only the results that changed are sent, each with its report's OBR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Results {
    #[default]
    Together,
    PerReport,
    PerObservation,
}

fn standard_encoding() -> String {
    "|^~\\&".into()
}

fn v251() -> String {
    "2.5.1".into()
}

fn emrsync() -> String {
    "EMRSYNC".into()
}

/// Events a target receives: a topic canonical (or R4 criteria such as `Encounter`) and
/// filters, exactly as a Subscription says them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub criteria: String,
    #[serde(default)]
    pub filters: Vec<String>,
}

/// The longest target name: it is part of every queued message's key and of log lines.
const MAX_NAME: usize = 64;
/// The most targets one configuration may have (each is a task and a connection).
const MAX_TARGETS: usize = 200;

impl Routes {
    /// Read and check a configuration; every problem found is reported, one per line.
    pub fn parse(text: &str) -> Result<Routes, String> {
        let routes: Routes =
            serde_json::from_str(text).map_err(|e| format!("routes do not read: {e}"))?;
        routes.check()?;
        Ok(routes)
    }

    /// Every problem of this configuration, or none.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.targets.len() > MAX_TARGETS {
            problems.push(format!("at most {MAX_TARGETS} targets"));
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.targets {
            let ok_name = !t.name.is_empty()
                && t.name.len() <= MAX_NAME
                && t.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok_name {
                problems.push(format!(
                    "target name '{}': 1 to {MAX_NAME} letters, digits, '-', '_' or '.'",
                    t.name
                ));
            }
            if !seen.insert(t.name.as_str()) {
                problems.push(format!("target '{}' is named twice", t.name));
            }
            match (&t.channel, &t.format) {
                (Channel::Mllp { address, tls, .. }, Format::Hl7v2 { encoding, .. }) => {
                    if let Err(why) = Delimiters::from_encoding(encoding) {
                        problems.push(format!("target '{}': encoding '{encoding}': {why}", t.name));
                    }
                    let bad = address
                        .rsplit_once(':')
                        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err());
                    if bad {
                        problems.push(format!(
                            "target '{}': address '{address}' is not host:port",
                            t.name
                        ));
                    }
                    if let Some(tls) = tls
                        && tls.cert_file.is_some() != tls.key_file.is_some()
                    {
                        problems.push(format!(
                            "target '{}': tls needs both cert_file and key_file, or neither",
                            t.name
                        ));
                    }
                }
                (Channel::Fhir { base, oauth2, .. }, Format::Fhir) => {
                    if !(base.starts_with("http://") || base.starts_with("https://")) {
                        problems.push(format!(
                            "target '{}': base '{base}' is not an http(s) URL",
                            t.name
                        ));
                    }
                    if let Some(why) = oauth2.as_ref().and_then(OAuth2::problem) {
                        problems.push(format!("target '{}': {why}", t.name));
                    }
                }
                (
                    Channel::RestHook {
                        endpoint,
                        headers,
                        oauth2,
                        ..
                    },
                    Format::Notification { .. },
                ) => {
                    let url = reqwest::Url::parse(endpoint);
                    let fine = url.as_ref().is_ok_and(|u| {
                        matches!(u.scheme(), "http" | "https")
                            && u.host().is_some()
                            && u.username().is_empty()
                            && u.password().is_none()
                    });
                    if !fine {
                        problems.push(format!(
                            "target '{}': endpoint '{endpoint}' is not an http(s) URL with a host \
                             and no credentials",
                            t.name
                        ));
                    }
                    for h in headers {
                        if let Some(why) = h.problem() {
                            problems.push(format!("target '{}': {why}", t.name));
                        }
                    }
                    if let Some(why) = oauth2.as_ref().and_then(OAuth2::problem) {
                        problems.push(format!("target '{}': {why}", t.name));
                    }
                }
                (Channel::RestHook { .. }, _) => problems.push(format!(
                    "target '{}': a rest-hook channel carries the notification format",
                    t.name
                )),
                (Channel::Mllp { .. }, _) => problems.push(format!(
                    "target '{}': an mllp channel carries the hl7v2 format",
                    t.name
                )),
                (Channel::Fhir { .. }, _) => problems.push(format!(
                    "target '{}': a fhir channel carries the fhir format",
                    t.name
                )),
            }
            if t.events.is_empty() {
                problems.push(format!("target '{}' receives no events", t.name));
            }
            for e in &t.events {
                match topics::resolve(&e.criteria) {
                    Ok(topic) => {
                        for f in &e.filters {
                            if let Err(why) = check_filter(&topic, f) {
                                problems.push(format!("target '{}': {why}", t.name));
                            }
                        }
                    }
                    Err(why) => problems.push(format!("target '{}': {why}", t.name)),
                }
            }
        }
        let mut domains = std::collections::HashSet::new();
        for d in &self.truth {
            if !domains.insert(d.domain.as_str()) {
                problems.push(format!("domain '{}' is named twice", d.domain));
            }
            if d.owners.is_empty() {
                problems.push(format!("domain '{}' has no owner", d.domain));
            }
            if d.resources.is_empty() {
                problems.push(format!("domain '{}' covers no resource type", d.domain));
            }
            for r in &d.resources {
                if !crate::fhir::definitions::Definitions::get().is_resource_type(r) {
                    problems.push(format!(
                        "domain '{}': '{r}' is not an R4 resource type",
                        d.domain
                    ));
                }
            }
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(problems.join("\n")),
        }
    }

    /// What changed from `before` to this, in words: targets added, removed and changed.
    pub fn summary_since(&self, before: &Routes) -> String {
        let names =
            |r: &Routes| -> Vec<String> { r.targets.iter().map(|t| t.name.clone()).collect() };
        let (old, new) = (names(before), names(self));
        let mut parts = Vec::new();
        for n in new.iter().filter(|n| !old.contains(n)) {
            parts.push(format!("added {n}"));
        }
        for n in old.iter().filter(|n| !new.contains(n)) {
            parts.push(format!("removed {n}"));
        }
        for t in &self.targets {
            if let Some(b) = before.targets.iter().find(|b| b.name == t.name)
                && b != t
            {
                parts.push(format!("changed {}", t.name));
            }
        }
        if self.truth != before.truth {
            let names: Vec<&str> = self.truth.iter().map(|d| d.domain.as_str()).collect();
            parts.push(format!(
                "source of truth now: {}",
                match names.is_empty() {
                    true => "none".to_string(),
                    false => names.join(", "),
                }
            ));
        }
        match parts.is_empty() {
            true => "no change".into(),
            false => parts.join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY: &str = r#"{"targets": [{
        "name": "legacy-emr",
        "channel": {"type": "mllp", "address": "127.0.0.1:2576"},
        "format": {"type": "hl7v2", "receiving_application": "LEGACY"},
        "events": [{"criteria": "http://emrsync.org/SubscriptionTopic/encounter-start",
                    "filters": ["Encounter?class=EMER"]}],
        "identifier_system": "urn:oid:2.16.840.1.113883.3.72.5.9.1",
        "origins": ["hl7v2 LEGACY@HOSP"]}]}"#;

    #[test]
    fn a_target_reads_with_its_defaults() {
        let r = Routes::parse(LEGACY).unwrap();
        let t = &r.targets[0];
        assert!(t.enabled);
        assert_eq!(
            t.channel,
            Channel::Mllp {
                address: "127.0.0.1:2576".into(),
                ack_timeout_ms: 10_000,
                tls: None
            }
        );
        let Format::Hl7v2 {
            version,
            sending_application,
            ..
        } = &t.format
        else {
            panic!("an hl7v2 target");
        };
        assert_eq!(
            (version.as_str(), sending_application.as_str()),
            ("2.5.1", "EMRSYNC")
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"{"targets": [
            {"name": "a b", "channel": {"type": "mllp", "address": "nowhere"},
             "format": {"type": "hl7v2"}, "events": [{"criteria": "http://example.org/no-topic"}]},
            {"name": "x", "channel": {"type": "mllp", "address": "h:1"}, "format": {"type": "hl7v2"},
             "events": [{"criteria": "Encounter", "filters": ["Encounter?nonsense=1"]}]},
            {"name": "x", "channel": {"type": "mllp", "address": "h:1"}, "format": {"type": "hl7v2"},
             "events": []},
            {"name": "f", "channel": {"type": "fhir", "base": "ftp://x",
                                      "oauth2": {"token_url": "https://x/token", "client_id": "c"}},
             "format": {"type": "hl7v2"}, "events": [{"criteria": "Patient"}]}]}"#;
        let e = Routes::parse(text).unwrap_err();
        for part in [
            "target name 'a b'",
            "'nowhere' is not host:port",
            "neither a topic",
            "nonsense",
            "named twice",
            "receives no events",
        ] {
            assert!(e.contains(part), "{part} missing from: {e}");
        }
        assert!(
            Routes::parse(r#"{"targets": [], "extra": 1}"#)
                .unwrap_err()
                .contains("extra")
        );
    }

    #[test]
    fn orders_go_as_orm_unless_the_target_asks_for_oml() {
        let orders = |text: &str| match Routes::parse(text).map(|r| r.targets[0].format.clone()) {
            Ok(Format::Hl7v2 { orders, .. }) => Ok(orders.kind().join("^")),
            Ok(_) => Err("not hl7v2".to_string()),
            Err(e) => Err(e),
        };
        let target = |format: &str| {
            format!(
                r#"{{"targets": [{{"name": "lab", "channel": {{"type": "mllp", "address": "h:1"}},
                   "format": {format}, "events": [{{"criteria": "ServiceRequest"}}]}}]}}"#
            )
        };
        assert_eq!(
            orders(&target(r#"{"type": "hl7v2"}"#)).unwrap(),
            "ORM^O01^ORM_O01"
        );
        assert_eq!(
            orders(&target(r#"{"type": "hl7v2", "orders": "OML^O21"}"#)).unwrap(),
            "OML^O21^OML_O21"
        );
        assert!(
            orders(&target(r#"{"type": "hl7v2", "orders": "OMG^O19"}"#))
                .unwrap_err()
                .contains("OML^O21")
        );
    }

    #[test]
    fn a_target_may_have_its_own_delimiters() {
        let target = |encoding: &str| {
            format!(
                r#"{{"targets": [{{"name": "old", "channel": {{"type": "mllp", "address": "h:1"}},
                   "format": {{"type": "hl7v2", "encoding": "{encoding}"}},
                   "events": [{{"criteria": "Patient"}}]}}]}}"#
            )
        };
        let r = Routes::parse(&target("#!*$@")).unwrap();
        let Format::Hl7v2 { encoding, .. } = &r.targets[0].format else {
            panic!("hl7v2");
        };
        let d = Delimiters::from_encoding(encoding).unwrap();
        assert_eq!((d.field, d.component, d.repetition), ('#', '!', '*'));
        assert_eq!((d.escape, d.subcomponent), (Some('$'), '@'));
        let e = Routes::parse(&target("|^^&&")).unwrap_err();
        assert!(e.contains("encoding '|^^&&'"), "{e}");
        let standard = Routes::parse(LEGACY).unwrap();
        let Format::Hl7v2 { encoding, .. } = &standard.targets[0].format else {
            panic!("hl7v2");
        };
        assert_eq!(encoding, "|^~\\&");
    }

    #[test]
    fn the_summary_names_what_changed() {
        let a = Routes::parse(LEGACY).unwrap();
        let mut b = a.clone();
        b.targets[0].origins.clear();
        let mut c = a.clone();
        c.targets[0].name = "ed".into();
        assert_eq!(b.summary_since(&a), "changed legacy-emr");
        assert_eq!(c.summary_since(&a), "added ed, removed legacy-emr");
        assert_eq!(a.summary_since(&Routes::default()), "added legacy-emr");
        assert_eq!(a.summary_since(&a), "no change");
    }
}
