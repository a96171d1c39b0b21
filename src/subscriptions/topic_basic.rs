//! The topic catalogue in the form R4 clients can read: R4 has no SubscriptionTopic resource,
//! so the Backport IG represents each topic as a `Basic` whose code is `SubscriptionTopic` and
//! whose elements are R5 cross-version extensions
//! (`http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.<element>`).
//!
//! The server owns these resources: they are written at start-up from `capability/topics/`
//! (only when a definition changed, so several processes on one database agree), clients can
//! read and search them (`Basic?code=SubscriptionTopic`) but not change them, and a client
//! cannot define topics of its own.

use super::topics;
use crate::fhir::Issue;
use crate::fhir::resource::FhirId;
use crate::store::{Method, Store, StoreError, versions, write};
use serde_json::{Map, Value, json};

const XVER: &str = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.";
const FHIR_TYPES: &str = "http://hl7.org/fhir/fhir-types";
/// Ids of the server's topic resources start with this (`Basic/topic-lab-result`).
const ID_PREFIX: &str = "topic-";

/// The FHIR type of each SubscriptionTopic element a topic file may use, which names the
/// extension's `value[x]`; `None` for a backbone element (nested extensions).
fn value_type(element: &str) -> Option<&'static str> {
    Some(match element {
        "url" | "resource" => "Uri",
        "description" => "Markdown",
        "date" => "DateTime",
        "supportedInteraction"
        | "resultForCreate"
        | "resultForDelete"
        | "comparator"
        | "modifier" => "Code",
        "requireBoth" => "Boolean",
        "derivedFrom" => "Canonical",
        // version, name, title, previous, current, fhirPathCriteria, filterParameter,
        // filterDefinition, include, revInclude
        _ if !matches!(
            element,
            "resourceTrigger" | "queryCriteria" | "canFilterBy" | "notificationShape"
        ) =>
        {
            "String"
        }
        _ => return None,
    })
}

/// One element (all its repetitions) as extensions: `url` is the full URL at the top level
/// and the element's name inside a backbone, as the cross-version extensions define them.
fn extensions(url: &str, element: &str, value: &Value, out: &mut Vec<Value>) {
    let items: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    for item in items {
        match (value_type(element), item) {
            (None, Value::Object(fields)) => {
                let mut inner = Vec::new();
                for (name, v) in fields {
                    extensions(name, name, v, &mut inner);
                }
                out.push(json!({"url": url, "extension": inner}));
            }
            (Some(t), v) => {
                let mut ext = Map::new();
                ext.insert("url".into(), url.into());
                ext.insert(format!("value{t}"), v.clone());
                out.push(Value::Object(ext));
            }
            (None, other) => tracing::warn!(element, %other, "topic element is not an object"),
        }
    }
}

/// A topic definition (R5 SubscriptionTopic JSON) as an R4 `Basic`.
pub fn as_basic(definition: &Value) -> Value {
    let mut ext = Vec::new();
    let mut status = Vec::new();
    if let Value::Object(fields) = definition {
        for (name, value) in fields {
            match name.as_str() {
                "resourceType" | "id" => {}
                // status can make a topic unusable (retired): a modifier, as the IG has it
                "status" => {
                    status.push(json!({"url": format!("{XVER}status"), "valueCode": value}))
                }
                _ => extensions(&format!("{XVER}{name}"), name, value, &mut ext),
            }
        }
    }
    json!({
        "resourceType": "Basic",
        "id": basic_id(definition),
        "modifierExtension": status,
        "extension": ext,
        "code": {"coding": [{"system": FHIR_TYPES, "code": "SubscriptionTopic"}]},
    })
}

fn basic_id(definition: &Value) -> String {
    format!(
        "{ID_PREFIX}{}",
        definition["id"].as_str().unwrap_or_default()
    )
}

/// Write each topic of the catalogue as its `Basic`, unless the stored one already says the
/// same (a restart writes nothing; a new build with a changed topic writes a new version).
pub fn publish(store: &Store) -> Result<usize, StoreError> {
    let ctx = super::write_rules::server_context();
    let mut written = 0;
    for topic in topics::catalogue() {
        let basic = as_basic(&topic.definition);
        let id = basic["id"].as_str().unwrap_or_default().to_string();
        let fid = FhirId::parse(&id).map_err(|e| StoreError::Conflict(e.to_string()))?;
        let changed = store.write(|tx| {
            let current = versions::current(tx.conn, "Basic", &id)?;
            if current.as_ref().is_some_and(|v| v.says(&basic)) {
                return Ok::<bool, StoreError>(false);
            }
            write::put(tx, "Basic", &fid, basic.clone(), Method::Put, None, &ctx)?;
            Ok(true)
        });
        match changed {
            Ok(true) => written += 1,
            Ok(false) => {}
            // another process published the same definition at the same moment
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// Refuse a client's write that would change a server topic or define a topic of its own
/// (called for every Basic written by anyone but the server).
pub fn check_client_write(id: &str, content: Option<&Value>) -> Result<(), StoreError> {
    if topics::catalogue()
        .iter()
        .any(|t| basic_id(&t.definition) == id)
    {
        return Err(StoreError::Forbidden(format!(
            "Basic/{id} is one of the server's SubscriptionTopics (capability/topics): clients can read it, not change it"
        )));
    }
    let is_topic = content
        .and_then(|c| c["code"]["coding"].as_array())
        .is_some_and(|codings| {
            codings
                .iter()
                .any(|c| c["system"] == FHIR_TYPES && c["code"] == "SubscriptionTopic")
        });
    if is_topic {
        return Err(StoreError::Invalid(vec![
            Issue::error(
                "business-rule",
                "this server does not accept client-defined SubscriptionTopics: subscribe to one of the topics it lists (Basic?code=SubscriptionTopic, or its CapabilityStatement)",
            )
            .at("Basic.code"),
        ]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_becomes_a_basic_with_cross_version_extensions() {
        for topic in topics::catalogue() {
            let b = as_basic(&topic.definition);
            let ext = b["extension"].as_array().unwrap();
            let url = ext
                .iter()
                .find(|e| e["url"] == format!("{XVER}url"))
                .unwrap();
            assert_eq!(url["valueUri"], topic.url.as_str());
            assert_eq!(b["code"]["coding"][0]["code"], "SubscriptionTopic");
            assert_eq!(b["modifierExtension"][0]["valueCode"], "active");
            let triggers: Vec<&Value> = ext
                .iter()
                .filter(|e| e["url"] == format!("{XVER}resourceTrigger"))
                .collect();
            assert_eq!(triggers.len(), topic.triggers.len(), "{}", topic.url);
        }
    }

    #[test]
    fn nested_elements_keep_their_types() {
        let b = as_basic(
            &topics::find("http://emrsync.org/SubscriptionTopic/encounter-start")
                .unwrap()
                .definition,
        );
        let trigger = b["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["url"] == format!("{XVER}resourceTrigger"))
            .unwrap();
        let inner = trigger["extension"].as_array().unwrap();
        let get = |name: &str| inner.iter().find(|e| e["url"] == name).unwrap();
        assert!(
            get("resource")["valueUri"]
                .as_str()
                .unwrap()
                .ends_with("/Encounter")
        );
        assert!(get("supportedInteraction")["valueCode"].is_string());
        let q = get("queryCriteria")["extension"].as_array().unwrap();
        assert!(
            q.iter()
                .any(|e| e["url"] == "current" && e["valueString"].is_string())
        );
    }
}
