//! The one place that calls fhirbolt's R4 model. Its generic (de)serialisers monomorphise over
//! ~118K lines of generated code, so each is instantiated here once, behind plain functions.
//! They recurse once per level of the document: each measures it first (`nesting`) and runs
//! with the stack that depth needs.

use super::nesting;
use fhirbolt::model::r4::Resource;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};
use serde_json::Value;

fn strict() -> Option<DeserializationConfig> {
    Some(DeserializationConfig {
        mode: DeserializationMode::Strict,
    })
}

/// Parse JSON into the typed R4 model (strict: structure, JSON types, required fields) and write
/// it back in the spec's element order: the canonical JSON the store keeps.
/// Refuses a document nested deeper than `nesting::MAX_DEPTH`.
pub fn canonical_json(value: Value) -> Result<Value, String> {
    let depth = nesting::check(&value)?;
    guarded(depth, || {
        let typed: Resource =
            fhirbolt::json::from_json_value(value, strict()).map_err(|e| e.to_string())?;
        fhirbolt::json::to_json_value(typed, None).map_err(|e| e.to_string())
    })
}

/// Run fhirbolt with the stack `depth` needs, its panics made errors: it unwraps on some shapes
/// our validator refuses first (an empty array, `{"extension": []}`), and no document from
/// outside may take a thread down with it.
fn guarded<T>(depth: usize, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let run = std::panic::AssertUnwindSafe(f);
    nesting::with_stack(depth, || std::panic::catch_unwind(run))
        .unwrap_or_else(|_| Err("the document's structure could not be read".into()))
}

/// Parse a FHIR XML document into its JSON form. Refuses one nested deeper than a body may be
/// (the resources in it are then held to `nesting::MAX_DEPTH` by validation, before they are
/// stored: a resource too deep for JSON must never be stored through XML).
pub fn xml_to_json(bytes: &[u8]) -> Result<Value, String> {
    let elements = nesting::check_xml(bytes)?;
    // an XML element is up to two JSON levels (an array and its item)
    let value = guarded(2 * elements, || {
        let typed: Resource =
            fhirbolt::xml::from_slice(bytes, strict()).map_err(|e| e.to_string())?;
        fhirbolt::json::to_json_value(typed, None).map_err(|e| e.to_string())
    })?;
    nesting::check_body(&value)?;
    Ok(value)
}

/// Render a stored (already valid) resource, or a Bundle of them, as FHIR XML.
pub fn json_to_xml(value: Value) -> Result<String, String> {
    // not refused past MAX_DEPTH: a Bundle adds three levels to the stored resources it holds
    let depth = nesting::depth(&value);
    guarded(depth, || {
        let typed: Resource =
            fhirbolt::json::from_json_value(value, strict()).map_err(|e| e.to_string())?;
        fhirbolt::xml::to_string(&typed, None).map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_orders_elements_and_keeps_decimals() {
        let text = r#"{"valueQuantity":{"value":1.500,"unit":"mg"},"status":"final","code":{"text":"x"},"resourceType":"Observation"}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        let c = canonical_json(v).unwrap();
        let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["resourceType", "status", "code", "valueQuantity"]);
        assert_eq!(c["valueQuantity"]["value"].to_string(), "1.500");
    }

    #[test]
    fn xml_round_trip() {
        let v = json!({"resourceType":"Patient","id":"x","active":true,"name":[{"family":"Ng"}]});
        let xml = json_to_xml(v.clone()).unwrap();
        assert!(xml.contains("<family value=\"Ng\"/>"), "{xml}");
        assert_eq!(xml_to_json(xml.as_bytes()).unwrap(), v);
    }
}
