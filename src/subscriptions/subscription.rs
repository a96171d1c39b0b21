//! A `Subscription` resource in the Backport IG's R4 profile, read into what delivery needs:
//! the topic, the filters, the channel and its endpoint and headers, the payload, heartbeat,
//! timeout and batch size. Everything a subscriber can get wrong is said here, with the
//! element it concerns, before anything is stored.

pub use super::endpoint::EndpointPolicy;
use super::topics::{self, Criteria, Topic};
use crate::fhir::Issue;
use crate::fhir::search::query::parse_clause;
use serde_json::Value;

pub const FILTER_CRITERIA: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";
pub const PAYLOAD_CONTENT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";
pub const HEARTBEAT_PERIOD: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period";
pub const TIMEOUT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-timeout";
pub const MAX_COUNT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-max-count";

/// Seconds an endpoint has to answer, when the subscription does not say.
const DEFAULT_TIMEOUT: i64 = 10;
const MAX_TIMEOUT: i64 = 60;
/// Events one notification carries at most.
const MAX_BATCH: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    Empty,
    IdOnly,
    FullResource,
}

impl Payload {
    pub fn as_str(self) -> &'static str {
        match self {
            Payload::Empty => "empty",
            Payload::IdOnly => "id-only",
            Payload::FullResource => "full-resource",
        }
    }

    pub fn parse(s: &str) -> Option<Payload> {
        match s {
            "empty" => Some(Payload::Empty),
            "id-only" => Some(Payload::IdOnly),
            "full-resource" => Some(Payload::FullResource),
            _ => None,
        }
    }
}

/// What a valid Subscription asks for.
pub struct Spec {
    pub topic: Criteria,
    /// `Type?param=value` filters, ANDed.
    pub filters: Vec<String>,
    pub channel: String,
    pub endpoint: Option<String>,
    /// `Name: value` headers sent with each notification; write-only.
    pub headers: Vec<String>,
    pub payload: Payload,
    pub content_type: String,
    pub heartbeat_secs: Option<i64>,
    pub timeout_secs: i64,
    pub max_count: i64,
    /// `off` as the client set it; anything else starts (again) as `requested`.
    pub off: bool,
}

fn extensions<'a>(element: &'a Value, url: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    element
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |e| e.get("url").and_then(Value::as_str) == Some(url))
}

fn extension_int(element: &Value, url: &str) -> Option<i64> {
    extensions(element, url).find_map(|e| {
        ["valueUnsignedInt", "valuePositiveInt", "valueInteger"]
            .iter()
            .find_map(|k| e.get(*k).and_then(Value::as_i64))
    })
}

/// Read and check `resource` (a Subscription); every problem found, each at its element.
pub fn parse(resource: &Value, policy: &EndpointPolicy) -> Result<Spec, Vec<Issue>> {
    let mut issues = Vec::new();
    let mut problem = |at: &str, msg: String| {
        issues.push(Issue::error("value", msg).at(format!("Subscription.{at}")));
    };
    let criteria = resource
        .get("criteria")
        .and_then(Value::as_str)
        .unwrap_or("");
    let topic = match topics::resolve(criteria) {
        Ok(t) => Some(t),
        Err(msg) => {
            problem("criteria", msg);
            None
        }
    };
    let classic = matches!(topic, Some(Criteria::Classic(_)));
    let empty = Value::Null;
    let criteria_element = resource.get("_criteria").unwrap_or(&empty);
    let mut filters = Vec::new();
    for f in extensions(criteria_element, FILTER_CRITERIA) {
        let Some(text) = f.get("valueString").and_then(Value::as_str) else {
            problem(
                "criteria.extension",
                "a filter criteria extension carries no valueString".into(),
            );
            continue;
        };
        if let Some(topic) = &topic
            && let Err(msg) = check_filter(topic, text)
        {
            problem("criteria.extension", msg);
        }
        filters.push(text.to_string());
    }

    let channel = resource.get("channel").unwrap_or(&empty);
    let channel_type = channel.get("type").and_then(Value::as_str).unwrap_or("");
    let endpoint = channel
        .get("endpoint")
        .and_then(Value::as_str)
        .map(str::to_string);
    match channel_type {
        "rest-hook" => match &endpoint {
            Some(e) => {
                if let Err(msg) = policy.check(e) {
                    problem("channel.endpoint", msg);
                }
            }
            None => problem(
                "channel.endpoint",
                "a rest-hook subscription needs an endpoint".into(),
            ),
        },
        "websocket" => {}
        other => problem(
            "channel.type",
            format!("channel type '{other}' is not offered (rest-hook, websocket)"),
        ),
    }
    let headers = headers_of(resource);
    if let Err(msg) = check_headers(&headers) {
        problem("channel.header", msg);
    }
    let declared = channel.get("payload").and_then(Value::as_str);
    let content_type = declared.unwrap_or("application/fhir+json").to_string();
    if !matches!(
        content_type.as_str(),
        "application/fhir+json" | "application/json"
    ) {
        problem(
            "channel.payload",
            format!("payload type '{content_type}' is not offered (application/fhir+json)"),
        );
    }
    let payload_element = channel.get("_payload").unwrap_or(&empty);
    let payload = match extensions(payload_element, PAYLOAD_CONTENT)
        .find_map(|e| e.get("valueCode").and_then(Value::as_str))
    {
        // R4 classic: a payload type means the resource is sent, none means nothing is
        None if classic && declared.is_some() => Payload::FullResource,
        None if classic => Payload::Empty,
        None => Payload::IdOnly,
        Some(code) => Payload::parse(code).unwrap_or_else(|| {
            problem(
                "channel.payload.extension",
                format!("payload content '{code}' is not one of empty, id-only, full-resource"),
            );
            Payload::Empty
        }),
    };
    let heartbeat_secs = extension_int(channel, HEARTBEAT_PERIOD).filter(|s| *s > 0);
    let timeout_secs = extension_int(channel, TIMEOUT)
        .unwrap_or(DEFAULT_TIMEOUT)
        .clamp(1, MAX_TIMEOUT);
    let max_count = extension_int(channel, MAX_COUNT)
        .unwrap_or(1)
        .clamp(1, MAX_BATCH);
    let off = resource.get("status").and_then(Value::as_str) == Some("off");

    match (topic, issues.is_empty()) {
        (Some(topic), true) => Ok(Spec {
            topic,
            filters,
            channel: channel_type.to_string(),
            endpoint,
            headers,
            payload,
            content_type,
            heartbeat_secs,
            timeout_secs,
            max_count,
            off,
        }),
        _ => Err(issues),
    }
}

/// Headers a subscription may ask to be sent, and their size: enough for any authorization.
const MAX_HEADERS: usize = 16;
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Channel headers must each be `Name: value` with a valid name and a value without line
/// breaks or other control characters (one that is not would break every delivery, or add
/// headers of its own). They are checked where they are set aside, before anything is stored.
pub fn check_headers(headers: &[String]) -> Result<(), String> {
    if headers.len() > MAX_HEADERS {
        return Err(format!("at most {MAX_HEADERS} headers are accepted"));
    }
    for h in headers {
        let ok = h.len() <= MAX_HEADER_BYTES
            && h.split_once(':').is_some_and(|(name, value)| {
                reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).is_ok()
                    && !value.chars().any(|c| c.is_control() && c != '\t')
                    && reqwest::header::HeaderValue::from_str(value.trim()).is_ok()
            });
        if !ok {
            return Err(format!(
                "each header must be 'Name: value' with a valid name and a value of one line \
                 (at most {MAX_HEADER_BYTES} bytes)"
            ));
        }
    }
    Ok(())
}

/// A filter must name a type the topic covers and only parameters the topic lets subscribers
/// filter by, each a valid search of that type.
pub fn check_filter(topic: &Topic, text: &str) -> Result<(), String> {
    let (rtype, query) = text
        .split_once('?')
        .ok_or_else(|| format!("filter '{text}' must read Type?param=value"))?;
    if !topic.covers(rtype) {
        return Err(format!(
            "filter '{text}': the topic {} has no {rtype} events",
            topic.url
        ));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| format!("filter '{text}' does not decode: {e}"))?;
    if pairs.is_empty() {
        return Err(format!("filter '{text}' has no parameter"));
    }
    for (name, value) in &pairs {
        let code = name.split(':').next().unwrap_or(name);
        if !topic.allows_filter(rtype, code) {
            return Err(format!(
                "filter '{text}': the topic {} does not allow filtering {rtype} by '{code}'",
                topic.url
            ));
        }
        match parse_clause(rtype, name, value) {
            Ok(Some(c))
                if c.any_of
                    .iter()
                    .any(|p| matches!(p, crate::fhir::search::query::Predicate::Coded { .. })) =>
            {
                return Err(format!(
                    "filter '{text}': :in, :not-in, :below and :above are not matched in notifications yet: list the codes"
                ));
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(format!(
                    "filter '{text}': {name} is not a search parameter of {rtype}"
                ));
            }
            Err(e) => return Err(format!("filter '{text}': {}", e.message)),
        }
    }
    Ok(())
}

/// The filters, parsed for matching: per filter its type and clauses.
pub fn parsed_filters(
    filters: &[String],
) -> Vec<(String, Vec<crate::fhir::search::query::Clause>)> {
    filters
        .iter()
        .filter_map(|f| {
            let (rtype, query) = f.split_once('?')?;
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
            let clauses = pairs
                .iter()
                .filter_map(|(n, v)| parse_clause(rtype, n, v).ok().flatten())
                .collect();
            Some((rtype.to_string(), clauses))
        })
        .collect()
}

/// A client's Subscription as stored: `requested` until the server's handshake succeeds,
/// unless the client turned it `off`.
/// The Subscription as stored for a writer confined to `patient` (marked as that patient's,
/// `access::SUBSCRIPTION_PATIENT`), or for any other writer (no such mark: a client cannot
/// set it for itself).
pub fn confined_to(mut resource: Value, patient: Option<&str>) -> Value {
    use crate::auth::access::SUBSCRIPTION_PATIENT;
    if let Some(exts) = resource.get_mut("extension").and_then(Value::as_array_mut) {
        exts.retain(|e| e["url"] != SUBSCRIPTION_PATIENT);
        if exts.is_empty()
            && let Some(obj) = resource.as_object_mut()
        {
            obj.remove("extension");
        }
    }
    if let (Some(p), Some(obj)) = (patient, resource.as_object_mut()) {
        let mark = serde_json::json!({"url": SUBSCRIPTION_PATIENT,
            "valueReference": {"reference": format!("Patient/{p}")}});
        match obj
            .entry("extension")
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(exts) => exts.push(mark),
            other => *other = Value::Array(vec![mark]),
        }
    }
    resource
}

pub fn requested(mut resource: Value) -> Value {
    if resource.get("status").and_then(Value::as_str) != Some("off") {
        resource["status"] = Value::String("requested".into());
    }
    resource
}

/// The channel headers of a Subscription resource.
pub fn headers_of(resource: &Value) -> Vec<String> {
    resource
        .pointer("/channel/header")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// `resource` without its channel headers: they are kept apart (write-only) and never stored
/// in the resource, so that no read, search or history can show them.
pub fn without_headers(mut resource: Value) -> Value {
    if let Some(channel) = resource.get_mut("channel").and_then(Value::as_object_mut) {
        channel.remove("header");
        channel.remove("_header");
    }
    resource
}
