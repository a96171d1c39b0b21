//! The topic catalogue: R5 SubscriptionTopic definitions kept as data in `capability/topics/`.
//! A topic says which changes fire it (resource triggers: the interactions, and search-style
//! criteria on the previous and current versions), which filters a subscriber may add
//! (`canFilterBy`), and what a notification carries besides its focus (`notificationShape`).

use crate::fhir::fhirpath::{self, Expr, Out};
use crate::fhir::search::matcher::matches_all;
use crate::fhir::search::query::{Clause, parse_clause};
use serde::Deserialize;
use serde_json::Value;
use std::sync::OnceLock;

/// The catalogue's files, embedded: topics are part of what a build of the server offers.
const FILES: &[(&str, &str)] = &[
    (
        "patient-demographics",
        include_str!("../../capability/topics/patient-demographics.json"),
    ),
    (
        "encounter-start",
        include_str!("../../capability/topics/encounter-start.json"),
    ),
    (
        "encounter-end",
        include_str!("../../capability/topics/encounter-end.json"),
    ),
    (
        "encounter-transfer",
        include_str!("../../capability/topics/encounter-transfer.json"),
    ),
    (
        "lab-result",
        include_str!("../../capability/topics/lab-result.json"),
    ),
    (
        "medication-change",
        include_str!("../../capability/topics/medication-change.json"),
    ),
    (
        "allergy-change",
        include_str!("../../capability/topics/allergy-change.json"),
    ),
    (
        "problem-list-change",
        include_str!("../../capability/topics/problem-list-change.json"),
    ),
    (
        "order-placed",
        include_str!("../../capability/topics/order-placed.json"),
    ),
    (
        "immunization-recorded",
        include_str!("../../capability/topics/immunization-recorded.json"),
    ),
    (
        "document-added",
        include_str!("../../capability/topics/document-added.json"),
    ),
    (
        "resource-change",
        include_str!("../../capability/topics/resource-change.json"),
    ),
    (
        "ops-alert",
        include_str!("../../capability/topics/ops-alert.json"),
    ),
];

const STRUCTURE: &str = "http://hl7.org/fhir/StructureDefinition/";

/// A change as a topic sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "create" => Some(Action::Create),
            "update" => Some(Action::Update),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// One change to test: its type and action, and the versions before and after it (`None`
/// before a create and after a delete).
pub struct Change<'a> {
    pub rtype: &'a str,
    pub action: Action,
    pub previous: Option<&'a Value>,
    pub current: Option<&'a Value>,
}

pub struct Topic {
    pub url: String,
    pub title: String,
    pub triggers: Vec<Trigger>,
    /// (resource type or `Resource`, parameter or `*`) pairs a subscriber may filter by.
    pub can_filter_by: Vec<(String, String)>,
    /// Per type: the `_include`s (`Encounter:patient`) a full-resource notification adds.
    pub shapes: Vec<(String, Vec<String>)>,
    /// The definition as written, for clients that read it.
    pub definition: Value,
}

pub struct Trigger {
    /// A resource type, or `Resource` for any.
    pub resource: String,
    interactions: Vec<Action>,
    previous: Option<Vec<Clause>>,
    current: Option<Vec<Clause>>,
    result_for_create: bool,
    result_for_delete: bool,
    require_both: bool,
    /// `%current.<path> != %previous.<path>`: the path, which must differ between versions.
    changed: Option<Expr>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TopicJson {
    url: String,
    title: String,
    resource_trigger: Vec<TriggerJson>,
    #[serde(default)]
    can_filter_by: Vec<FilterByJson>,
    #[serde(default)]
    notification_shape: Vec<ShapeJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TriggerJson {
    resource: String,
    supported_interaction: Vec<String>,
    query_criteria: Option<QueryCriteriaJson>,
    fhir_path_criteria: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryCriteriaJson {
    previous: Option<String>,
    result_for_create: Option<String>,
    current: Option<String>,
    result_for_delete: Option<String>,
    require_both: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterByJson {
    resource: String,
    filter_parameter: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShapeJson {
    resource: String,
    #[serde(default)]
    include: Vec<String>,
}

/// Every topic of the catalogue.
pub fn catalogue() -> &'static [Topic] {
    static TOPICS: OnceLock<Vec<Topic>> = OnceLock::new();
    TOPICS.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, text)| {
                load(text).unwrap_or_else(|e| panic!("capability/topics/{name}.json: {e}"))
            })
            .collect()
    })
}

/// What a subscription listens to: a topic of the catalogue, or an R4 classic criteria
/// (`Observation?code=...`) turned into a topic with one trigger of its own.
pub enum Criteria {
    Topic(&'static Topic),
    Classic(Box<Topic>),
}

impl std::ops::Deref for Criteria {
    type Target = Topic;
    fn deref(&self) -> &Topic {
        match self {
            Criteria::Topic(t) => t,
            Criteria::Classic(t) => t,
        }
    }
}

/// The criteria of `Subscription.criteria`: a topic canonical, or classic `Type?query`.
pub fn resolve(criteria: &str) -> Result<Criteria, String> {
    if let Some(t) = find(criteria) {
        return Ok(Criteria::Topic(t));
    }
    let (rtype, query) = criteria.split_once('?').unwrap_or((criteria, ""));
    if !crate::fhir::definitions::Definitions::get().is_resource_type(rtype) {
        let known: Vec<&str> = catalogue().iter().map(|t| t.url.as_str()).collect();
        return Err(format!(
            "'{criteria}' is neither a topic of this server (known topics: {}) nor an R4 criteria such as Observation?code=...",
            known.join(", ")
        ));
    }
    // classic R4: a create or update of the type that matches the search
    let t = TriggerJson {
        resource: format!("{STRUCTURE}{rtype}"),
        supported_interaction: vec!["create".into(), "update".into()],
        query_criteria: (!query.is_empty()).then(|| QueryCriteriaJson {
            previous: None,
            result_for_create: None,
            current: Some(query.to_string()),
            result_for_delete: None,
            require_both: None,
        }),
        fhir_path_criteria: None,
    };
    Ok(Criteria::Classic(Box::new(Topic {
        url: criteria.to_string(),
        title: format!("R4 criteria {criteria}"),
        triggers: vec![trigger(&t).map_err(|e| format!("criteria '{criteria}': {e}"))?],
        can_filter_by: Vec::new(),
        shapes: Vec::new(),
        definition: Value::Null,
    })))
}

/// The topic with this canonical URL (a `|version` suffix is ignored).
pub fn find(canonical: &str) -> Option<&'static Topic> {
    let url = canonical.split('|').next().unwrap_or(canonical);
    catalogue().iter().find(|t| t.url == url)
}

fn type_of(url: &str) -> String {
    url.strip_prefix(STRUCTURE).unwrap_or(url).to_string()
}

fn load(text: &str) -> Result<Topic, String> {
    let definition: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let t: TopicJson = serde_json::from_value(definition.clone()).map_err(|e| e.to_string())?;
    let triggers = t
        .resource_trigger
        .iter()
        .map(trigger)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Topic {
        url: t.url,
        title: t.title,
        triggers,
        can_filter_by: t
            .can_filter_by
            .iter()
            .map(|f| (type_of(&f.resource), f.filter_parameter.clone()))
            .collect(),
        shapes: t
            .notification_shape
            .iter()
            .map(|s| (type_of(&s.resource), s.include.clone()))
            .collect(),
        definition,
    })
}

fn trigger(t: &TriggerJson) -> Result<Trigger, String> {
    let resource = type_of(&t.resource);
    let interactions = t
        .supported_interaction
        .iter()
        .map(|i| Action::parse(i).ok_or_else(|| format!("unknown interaction {i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let q = t.query_criteria.as_ref();
    let criteria = |text: Option<&String>| -> Result<Option<Vec<Clause>>, String> {
        text.map(|query| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(query)
                .map_err(|e| e.to_string())?
                .iter()
                .map(|(name, value)| {
                    parse_clause(&resource, name, value)
                        .map_err(|e| e.message)?
                        .ok_or_else(|| format!("{name} is not a search parameter of {resource}"))
                })
                .collect()
        })
        .transpose()
    };
    let passes = |r: Option<&String>| r.map(String::as_str) == Some("test-passes");
    let changed = t
        .fhir_path_criteria
        .as_deref()
        .map(|f| changed_path(&resource, f))
        .transpose()?;
    Ok(Trigger {
        previous: criteria(q.and_then(|q| q.previous.as_ref()))?,
        current: criteria(q.and_then(|q| q.current.as_ref()))?,
        result_for_create: passes(q.and_then(|q| q.result_for_create.as_ref())),
        result_for_delete: passes(q.and_then(|q| q.result_for_delete.as_ref())),
        require_both: q.and_then(|q| q.require_both).unwrap_or(false),
        interactions,
        resource,
        changed,
    })
}

/// The one FHIRPath form the catalogue uses: `%current.<path> != %previous.<path>`.
fn changed_path(rtype: &str, text: &str) -> Result<Expr, String> {
    let (left, right) = text
        .split_once("!=")
        .ok_or_else(|| format!("unsupported fhirPathCriteria {text}"))?;
    let (left, right) = (left.trim(), right.trim());
    let path = left
        .strip_prefix("%current.")
        .filter(|p| right.strip_prefix("%previous.") == Some(p))
        .ok_or_else(|| format!("unsupported fhirPathCriteria {text}"))?;
    fhirpath::parse(&format!("{rtype}.{path}")).map_err(|e| e.0)
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl Topic {
    /// Whether `change` fires this topic.
    pub fn fires(&self, change: &Change) -> bool {
        self.triggers.iter().any(|t| t.fires(change))
    }

    /// Whether a subscriber may filter `rtype` events by `param`.
    pub fn allows_filter(&self, rtype: &str, param: &str) -> bool {
        self.can_filter_by
            .iter()
            .any(|(t, p)| (t == rtype || t == "Resource") && (p == param || p == "*"))
    }

    /// Whether a change of `rtype` needs its previous version to be tested (previous criteria,
    /// or a field that must have changed).
    pub fn needs_previous(&self, rtype: &str) -> bool {
        self.triggers.iter().any(|t| {
            (t.resource == rtype || t.resource == "Resource")
                && (t.previous.is_some() || t.changed.is_some())
        })
    }

    /// Whether `rtype` is a type this topic's triggers cover.
    pub fn covers(&self, rtype: &str) -> bool {
        self.triggers
            .iter()
            .any(|t| t.resource == rtype || t.resource == "Resource")
    }
}

impl Trigger {
    fn fires(&self, change: &Change) -> bool {
        if (self.resource != change.rtype && self.resource != "Resource")
            || !self.interactions.contains(&change.action)
        {
            return false;
        }
        let previous = self.previous.as_ref().map(|c| match change.previous {
            Some(p) => matches_all(p, c),
            None => self.result_for_create,
        });
        let current = self.current.as_ref().map(|c| match change.current {
            Some(r) => matches_all(r, c),
            None => self.result_for_delete,
        });
        let criteria = match (previous, current) {
            (Some(p), Some(c)) if self.require_both => p && c,
            (Some(p), Some(c)) => p || c,
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => true,
        };
        criteria && self.changed_fires(change)
    }

    fn changed_fires(&self, change: &Change) -> bool {
        let Some(path) = &self.changed else {
            return true;
        };
        let values = |r: Option<&Value>| -> Vec<Value> {
            r.map(|r| {
                fhirpath::evaluate(path, r)
                    .into_iter()
                    .filter_map(|o| match o {
                        Out::Item(i) => i.value.cloned(),
                        Out::Literal(v) => Some(v),
                    })
                    .collect()
            })
            .unwrap_or_default()
        };
        values(change.current) != values(change.previous)
    }
}

#[cfg(test)]
#[path = "topics_tests.rs"]
mod tests;
