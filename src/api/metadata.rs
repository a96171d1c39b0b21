//! `GET /metadata`: the CapabilityStatement, built from `capability/capability-statement.json`
//! (what the server does) and the resource types the validator knows (which types it does it to).

use super::AppState;
use super::context::RequestContext;
use super::error::ApiError;
use super::render;
use crate::fhir::definitions::Definitions;
use crate::fhir::resource::{instant, now_micros};
use crate::fhir::search::{ParamType, SearchParams};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::OnceLock;

const TEMPLATE: &str = include_str!("../../capability/capability-statement.json");

/// The statement for a server at `base_url` (built once per process).
pub fn capability_statement(base_url: &str) -> Value {
    static BUILT: OnceLock<Value> = OnceLock::new();
    let mut cs = BUILT
        .get_or_init(|| {
            let mut cs: Value =
                serde_json::from_str(TEMPLATE).expect("capability-statement.json is valid JSON");
            cs["date"] = json!(instant(now_micros())[..10]);
            cs["software"]["version"] = json!(env!("CARGO_PKG_VERSION"));
            let rest = &mut cs["rest"][0];
            let template = rest
                .as_object_mut()
                .and_then(|r| r.remove("resourceTemplate"))
                .unwrap_or_default();
            let mut types: Vec<&str> = Definitions::get().resource_types().collect();
            types.sort_unstable();
            let rev_includes = rev_includes(&types);
            let resources: Vec<Value> = types
                .into_iter()
                .map(|t| {
                    let mut r = template.clone();
                    r["type"] = json!(t);
                    r["profile"] = json!(format!("http://hl7.org/fhir/StructureDefinition/{t}"));
                    let mut ordered = serde_json::Map::new();
                    ordered.insert("type".into(), r["type"].take());
                    ordered.insert("profile".into(), r["profile"].take());
                    for (k, v) in r.as_object().cloned().unwrap_or_default() {
                        if !v.is_null() {
                            ordered.insert(k, v);
                        }
                    }
                    let params: Vec<Value> = SearchParams::get()
                        .of_type(t)
                        .filter(|p| p.is_supported())
                        .map(|p| json!({"name": p.code, "definition": p.url, "type": p.kind.as_str()}))
                        .collect();
                    ordered.insert("searchInclude".into(), json!(includes_of(t)));
                    ordered.insert("searchRevInclude".into(), json!(rev_includes.get(t).cloned().unwrap_or_default()));
                    ordered.insert("searchParam".into(), Value::Array(params));
                    if t == "Subscription" {
                        // the Backport IG's way of naming the topics a server offers
                        let topics: Vec<Value> = crate::subscriptions::topics::catalogue()
                            .iter()
                            .map(|topic| json!({
                                "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical",
                                "valueCanonical": topic.url
                            }))
                            .collect();
                        let mut with_ext = serde_json::Map::new();
                        with_ext.insert("extension".into(), Value::Array(topics));
                        with_ext.extend(ordered);
                        ordered = with_ext;
                        ordered.insert("operation".into(), json!([
                            {"name": "status", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"},
                            {"name": "events", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events"}
                        ]));
                    }
                    let terminology: &[&str] = match t {
                        "CodeSystem" => &["lookup", "validate-code", "subsumes"],
                        "ValueSet" => &["expand", "validate-code"],
                        "ConceptMap" => &["translate"],
                        _ => &[],
                    };
                    if t == "AuditEvent" {
                        // the trail: written by the server only, read and searched by auditors
                        // with the parameters its own search answers (ops::audit::search)
                        let supported = crate::ops::audit::search::PARAMS;
                        ordered.insert("interaction".into(), json!([{"code": "read"}, {"code": "search-type"}]));
                        for k in ["versioning", "readHistory", "updateCreate", "conditionalCreate",
                                  "conditionalRead", "conditionalUpdate", "conditionalDelete"] {
                            ordered.remove(k);
                        }
                        ordered.insert("searchInclude".into(), json!([]));
                        ordered.insert("searchRevInclude".into(), json!([]));
                        if let Some(Value::Array(ps)) = ordered.get_mut("searchParam") {
                            ps.retain(|p| p["name"].as_str().is_some_and(|n| supported.contains(&n)));
                        }
                    }
                    if !terminology.is_empty() {
                        let ops: Vec<Value> = terminology
                            .iter()
                            .map(|op| json!({
                                "name": op,
                                "definition": format!("http://hl7.org/fhir/OperationDefinition/{t}-{op}")
                            }))
                            .collect();
                        ordered.insert("operation".into(), Value::Array(ops));
                    }
                    if t == "Patient" {
                        ordered.insert("operation".into(), json!([{
                            "name": "everything",
                            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"
                        }, {
                            "name": "match",
                            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match"
                        }, {
                            "name": "export",
                            "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"
                        }]));
                    }
                    if t == "Group" {
                        ordered.insert("operation".into(), json!([{
                            "name": "export",
                            "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
                        }]));
                    }
                    Value::Object(ordered)
                })
                .collect();
            rest["resource"] = Value::Array(resources);
            cs
        })
        .clone();
    cs["implementation"]["url"] = json!(base_url);
    cs["rest"][0]["security"] = security(base_url);
    cs
}

/// `rest.security`: SMART on FHIR, with the OAuth endpoints in the extension SMART App Launch
/// defines (clients read them here or at `.well-known/smart-configuration`).
fn security(base_url: &str) -> Value {
    let issuer = crate::auth::issuer_for(base_url);
    json!({
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "authorize", "valueUri": format!("{issuer}/authorize")},
                {"url": "token", "valueUri": format!("{issuer}/token")},
                {"url": "revoke", "valueUri": format!("{issuer}/revoke")},
                {"url": "introspect", "valueUri": format!("{issuer}/introspect")}
            ]
        }],
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR"
            }],
            "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"
        }],
        "description": "Every interaction but this statement and the SMART configuration needs a bearer token; SMART v1 and v2 scopes are enforced, patient scopes to the launch patient's compartment."
    })
}

/// `_include` values a search of `rtype` takes: each of its reference parameters, and `*`.
fn includes_of(rtype: &str) -> Vec<String> {
    let mut out: Vec<String> = SearchParams::get()
        .of_type(rtype)
        .filter(|p| p.kind == ParamType::Reference)
        .map(|p| format!("{rtype}:{}", p.code))
        .collect();
    out.push("*".into());
    out
}

/// `_revinclude` values per target type: every `Source:param` that may point at it.
fn rev_includes(types: &[&str]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    // (the audit trail is not a store of resources that a search could add)
    for source in types.iter().filter(|t| **t != "AuditEvent") {
        for p in SearchParams::get().of_type(source) {
            if p.kind != ParamType::Reference {
                continue;
            }
            for target in &p.target {
                out.entry(target.clone())
                    .or_default()
                    .push(format!("{source}:{}", p.code));
            }
        }
    }
    out
}

/// `GET /metadata`: the CapabilityStatement; with `mode=terminology`, the
/// TerminologyCapabilities (the code systems this server holds, and what its operations do).
pub async fn metadata(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let mode: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    match mode
        .iter()
        .find(|(k, _)| k == "mode")
        .map(|(_, v)| v.as_str())
    {
        None | Some("full") => {
            // part of it (`_summary`, `_elements`) for clients that fetch it often: the whole
            // is several hundred KB
            let mut cs = capability_statement(&state.base_url);
            crate::fhir::subset::apply_params(&mut cs, &mode).map_err(ApiError::bad_request)?;
            render::fhir(StatusCode::OK, &cs, &ctx)
        }
        Some("terminology") => {
            let terminology = state.terminology.clone();
            let base = state.base_url.clone();
            let tc = web::block(move || crate::terminology::ops::capabilities(&terminology, &base))
                .await??;
            render::fhir(StatusCode::OK, &tc, &ctx)
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "mode={other}: this server answers mode=full (the CapabilityStatement) and mode=terminology"
        ))),
    }
}
