//! FHIR API requests counted and timed by interaction (the R4 names: `read`, `vread`,
//! `search-type`, `create`...), resource type and status. The interaction is told from the
//! route the request matched, so the labels are a small fixed set whatever clients send: an
//! unknown type is `other`, an unmatched path `unknown`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;

/// The middleware (on the `/fhir` scope).
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let res = next.call(req).await?;
    let r = res.request();
    let pattern = r.match_pattern();
    let interaction = interaction(r.method(), pattern.as_deref(), r.path());
    let rtype = r
        .match_info()
        .get("type")
        .or_else(|| first_segment(r.path()))
        .filter(|t| crate::fhir::definitions::Definitions::get().is_resource_type(t))
        .unwrap_or(if pattern.is_some() { "" } else { "other" })
        .to_string();
    let status = res.status().as_u16().to_string();
    metrics::counter!("emrsync_http_requests_total",
        "interaction" => interaction, "type" => rtype.clone(), "status" => status)
    .increment(1);
    metrics::histogram!("emrsync_http_request_duration_seconds",
        "interaction" => interaction, "type" => rtype)
    .record(started.elapsed().as_secs_f64());
    Ok(res)
}

/// `/fhir/Patient/...`'s `Patient`.
fn first_segment(path: &str) -> Option<&str> {
    path.strip_prefix("/fhir/")?.split('/').next()
}

/// The R4 interaction a route stands for.
pub fn interaction(method: &Method, pattern: Option<&str>, path: &str) -> &'static str {
    let Some(p) = pattern else {
        return "unknown";
    };
    let p = p.strip_prefix("/fhir").unwrap_or(p);
    if path.contains('$') {
        return "operation";
    }
    let m = method.as_str();
    match (m, p) {
        (_, "/metadata") => "capabilities",
        (_, "/.well-known/smart-configuration") => "smart-configuration",
        ("POST", "" | "/") => "batch-transaction",
        ("GET", "" | "/") | ("POST", "/_search") => "search-system",
        ("GET", "/_history") => "history-system",
        ("GET", "/{type}") | ("POST", "/{type}/_search") => "search-type",
        ("GET", "/{type}/_history") => "history-type",
        ("GET", "/{type}/{id}/_history") => "history-instance",
        ("GET", "/{type}/{id}/_history/{vid}") => "vread",
        ("GET", "/{type}/{id}") => "read",
        ("GET", "/{compartment}/{id}/{type}") => "search-compartment",
        ("POST", "/{type}") => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_told_as_r4_interactions() {
        let i = |m: Method, p: &str, path: &str| interaction(&m, Some(p), path);
        assert_eq!(
            i(Method::GET, "/fhir/{type}/{id}", "/fhir/Patient/1"),
            "read"
        );
        assert_eq!(
            i(Method::GET, "/fhir/{type}", "/fhir/Patient"),
            "search-type"
        );
        assert_eq!(
            i(
                Method::POST,
                "/fhir/{type}/_search",
                "/fhir/Patient/_search"
            ),
            "search-type"
        );
        assert_eq!(i(Method::POST, "/fhir", "/fhir"), "batch-transaction");
        assert_eq!(i(Method::PUT, "/fhir/{type}", "/fhir/Patient"), "update");
        assert_eq!(
            i(
                Method::GET,
                "/fhir/{type}/{id}/_history/{vid}",
                "/fhir/Patient/1/_history/2"
            ),
            "vread"
        );
        assert_eq!(
            i(
                Method::GET,
                "/fhir/Patient/{id}/$everything",
                "/fhir/Patient/1/$everything"
            ),
            "operation"
        );
        assert_eq!(
            interaction(&Method::GET, None, "/fhir/nonsense/a/b/c"),
            "unknown"
        );
    }
}
