//! Every FHIR API request recorded once in the audit trail: who (the token's client and user,
//! the network address), what (the interaction, the resource, the patient, a search's query),
//! when, and how it ended (a refusal of authorization included). A write records its own rows
//! in its transaction (or its refusal), and marks the request so that it is not recorded
//! twice; everything else is queued here for the flusher, off the request path.

use super::super::metrics::http::Route;
use crate::api::context::CorrelationId;
use crate::auth::Grant;
use crate::store::Version;
use crate::store::audit::{Entry, Shown, kind};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A request's mark, shared between this middleware and the handler: set when the request's
/// audit rows were written by another path (a write), and given what a response disclosed.
#[derive(Debug, Clone, Default)]
pub struct Recorded(Arc<Mark>);

#[derive(Debug, Default)]
struct Mark {
    written: AtomicBool,
    shown: std::sync::Mutex<Vec<Shown>>,
}

impl Recorded {
    pub fn set(&self) {
        self.0.written.store(true, Ordering::Relaxed);
    }

    /// The versions a response disclosed (a search's or a history's page): the access is
    /// recorded once per patient they belong to.
    pub fn showed<'a>(&self, versions: impl IntoIterator<Item = &'a Version>) {
        let mut shown = self.0.shown.lock().unwrap_or_else(|p| p.into_inner());
        shown.extend(versions.into_iter().map(|v| Shown {
            resource_type: v.resource_type.clone(),
            id: v.id.clone(),
            content: v.content.clone(),
        }));
    }
}

/// The longest query kept (a search's query string).
const MAX_QUERY: usize = 2_000;

/// The middleware (on the `/fhir` scope).
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mark = Recorded::default();
    req.extensions_mut().insert(mark.clone());
    let address = req.peer_addr().map(|a| a.ip().to_string());
    let res = next.call(req).await?;
    if mark.0.written.load(Ordering::Relaxed) {
        return Ok(res);
    }
    let r = res.request();
    let route = r
        .extensions()
        .get::<Route>()
        .cloned()
        .unwrap_or_else(|| Route::of(r.method(), r.path()));
    let action = route.interaction;
    if action == "capabilities" || action == "smart-configuration" {
        return Ok(res); // public, and about no one
    }
    let Some(store) = r
        .app_data::<web::Data<crate::api::AppState>>()
        .map(|s| s.store.clone())
    else {
        return Ok(res);
    };
    let ext = r.extensions();
    let actor = ext
        .get::<Arc<Grant>>()
        .map(|g| g.actor())
        .unwrap_or_else(|| "anonymous".into());
    let correlation = ext
        .get::<CorrelationId>()
        .map(|c| c.0.clone())
        .unwrap_or_default();
    drop(ext);
    let status = res.status();
    let mut e = Entry::now(kind::REST, action, &actor, &correlation);
    e.outcome = match status.as_u16() {
        0..=399 => "success",
        500.. => "error",
        _ => "failure",
    }
    .into();
    if !status.is_success() {
        e.detail = Some(format!("HTTP {}", status.as_u16()));
    }
    e.address = address;
    e.version_id = route.vid.and_then(|v| v.parse().ok());
    e.patient = patient(
        route.rtype.as_deref(),
        route.id.as_deref(),
        r.query_string(),
    );
    e.resource_type = route.rtype;
    e.resource_id = route.id;
    e.shown = std::mem::take(&mut *mark.0.shown.lock().unwrap_or_else(|p| p.into_inner()));
    if action.starts_with("search") || action == "operation" {
        let q = r.query_string();
        if !q.is_empty() {
            e.query = Some(q.chars().take(MAX_QUERY).collect());
        }
    }
    // a read of another type than Patient is given its patient by the flusher, off the
    // request path (the resource is in the cache by then), and a search one row per patient
    // it showed
    store.audit(e);
    Ok(res)
}

/// The patient a request is about, as far as its path and query say: a Patient's own id, a
/// Patient compartment, or a search by `patient` / `subject` naming a Patient.
fn patient(rtype: Option<&str>, id: Option<&str>, query: &str) -> Option<String> {
    if let (Some("Patient"), Some(id)) = (rtype, id) {
        return Some(format!("Patient/{id}"));
    }
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    params.iter().find_map(|(k, v)| {
        let name = k.split(':').next().unwrap_or(k);
        let v = v.split(',').next().unwrap_or(v);
        match name {
            "patient" if !v.contains('/') && !v.is_empty() => Some(format!("Patient/{v}")),
            "patient" | "subject" if v.starts_with("Patient/") => Some(v.to_string()),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::patient;

    #[test]
    fn the_patient_is_read_from_the_path_or_the_query() {
        assert_eq!(
            patient(Some("Patient"), Some("7"), ""),
            Some("Patient/7".into())
        );
        assert_eq!(
            patient(Some("Observation"), None, "patient=7&code=x"),
            Some("Patient/7".into())
        );
        assert_eq!(
            patient(Some("Observation"), None, "subject=Patient%2F9"),
            Some("Patient/9".into())
        );
        assert_eq!(patient(Some("Observation"), None, "subject=Group/1"), None);
        assert_eq!(patient(Some("Observation"), Some("3"), ""), None);
    }
}
