//! FHIR API requests counted and timed by interaction (the R4 names: `read`, `vread`,
//! `search-type`, `create`...), resource type and status. The interaction is told from the
//! shape of its path (as the route table has them), so the labels are a small fixed set whatever
//! clients send: an unknown type is left empty, a path of no route `unknown`.

use actix_web::HttpMessage;
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
    // told once per request: the audit middleware (outside this one) reads it back
    let route = Route::of(req.method(), req.path());
    req.extensions_mut().insert(route.clone());
    let res = next.call(req).await?;
    let rtype = route.rtype.unwrap_or_default();
    let status = res.status().as_u16().to_string();
    metrics::counter!("emrsync_http_requests_total",
        "interaction" => route.interaction, "type" => rtype.clone(), "status" => status)
    .increment(1);
    metrics::histogram!("emrsync_http_request_duration_seconds",
        "interaction" => route.interaction, "type" => rtype)
    .record(started.elapsed().as_secs_f64());
    Ok(res)
}

/// What a FHIR request is, told from its method and path alone (the route table's shapes): no
/// pattern matching, which costs a walk of every route's regular expression per call.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Route {
    /// The R4 interaction (`read`, `search-type`...); `unknown` for no route of the API.
    pub interaction: &'static str,
    /// The resource type (of a compartment search: the compartment's), when the path names a
    /// known one.
    pub rtype: Option<String>,
    pub id: Option<String>,
    pub vid: Option<String>,
    /// `Patient/1/Observation`: the type searched in the compartment.
    pub searched: Option<String>,
}

impl Route {
    pub fn of(method: &Method, path: &str) -> Route {
        let Some(rest) = path.strip_prefix("/fhir") else {
            return Route::unknown();
        };
        let segs: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect();
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let known = |t: &str| crate::fhir::definitions::Definitions::get().is_resource_type(t);
        let some = |t: &str| Some(t.to_string());
        let m = method.as_str();
        let by_method = |read: &'static str, create: &'static str| match m {
            "GET" | "HEAD" => read,
            "POST" => create,
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "other",
        };
        let mut r = Route::unknown();
        if s.iter().any(|x| x.starts_with('$')) {
            r.interaction = "operation";
            r.rtype = s.first().filter(|t| known(t)).and_then(|t| some(t));
            r.id = s
                .get(1)
                .filter(|x| !x.starts_with('$'))
                .and_then(|x| some(x));
            return r;
        }
        r.interaction = match s.as_slice() {
            [] => by_method("search-system", "batch-transaction"),
            ["metadata"] => "capabilities",
            [".well-known", ..] => "smart-configuration",
            ["_search"] if m == "POST" => "search-system",
            ["_history"] => "history-system",
            [t] if known(t) => by_method("search-type", "create"),
            [t, "_search"] if known(t) && m == "POST" => "search-type",
            [t, "_history"] if known(t) => "history-type",
            [t, _] if known(t) => by_method("read", "other"),
            [t, _, "_history"] if known(t) => "history-instance",
            [t, _, "_history", _] if known(t) => "vread",
            [c, _, t] | [c, _, t, "_search"]
                if known(c) && known(t) && (s.len() == 3 || m == "POST") =>
            {
                r.searched = some(t);
                "search-compartment"
            }
            _ => "unknown",
        };
        if r.interaction == "unknown" {
            return r;
        }
        r.rtype = s.first().filter(|t| known(t)).and_then(|t| some(t));
        r.id = match s.as_slice() {
            [_, "_search" | "_history", ..] => None,
            [_, id, ..] => some(id),
            _ => None,
        };
        r.vid = match s.as_slice() {
            [_, _, "_history", v] => some(v),
            _ => None,
        };
        r
    }

    fn unknown() -> Route {
        Route {
            interaction: "unknown",
            ..Route::default()
        }
    }
}

/// A path segment, percent-decoded.
fn decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_told_as_r4_interactions() {
        let i = |m: Method, path: &str| Route::of(&m, path).interaction;
        assert_eq!(i(Method::GET, "/fhir/Patient/1"), "read");
        assert_eq!(i(Method::GET, "/fhir/Patient"), "search-type");
        assert_eq!(i(Method::POST, "/fhir/Patient/_search"), "search-type");
        assert_eq!(i(Method::POST, "/fhir"), "batch-transaction");
        assert_eq!(i(Method::POST, "/fhir/Patient"), "create");
        assert_eq!(i(Method::PUT, "/fhir/Patient"), "update");
        assert_eq!(i(Method::GET, "/fhir/Patient/1/_history/2"), "vread");
        assert_eq!(i(Method::GET, "/fhir/Patient/1/$everything"), "operation");
        assert_eq!(
            i(Method::GET, "/fhir/Patient/1/Observation"),
            "search-compartment"
        );
        assert_eq!(
            i(Method::POST, "/fhir/Patient/1/Observation/_search"),
            "search-compartment"
        );
        assert_eq!(
            i(Method::GET, "/fhir/Patient/1/Observation/_search"),
            "unknown"
        );
        assert_eq!(i(Method::GET, "/fhir/nonsense/a/b/c"), "unknown");
        assert_eq!(i(Method::GET, "/fhir/metadata"), "capabilities");
        let r = Route::of(&Method::GET, "/fhir/Observation/o%2D1/_history/3");
        assert_eq!(
            (r.rtype.as_deref(), r.id.as_deref(), r.vid.as_deref()),
            (Some("Observation"), Some("o-1"), Some("3"))
        );
        let c = Route::of(&Method::GET, "/fhir/Patient/7/Observation");
        assert_eq!(
            (c.rtype.as_deref(), c.id.as_deref()),
            (Some("Patient"), Some("7"))
        );
    }
}
