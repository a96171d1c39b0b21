//! Error policy at the HTTP edge: every failure a client can cause becomes one `ApiError`, which
//! renders as an OperationOutcome with the right status. Store errors map to statuses here and
//! nowhere else (not found 404, deleted 410, If-Match mismatch 412, lost race 409, pool 503).

use crate::fhir::resource::http_date;
use crate::fhir::{Issue, operation_outcome};
use crate::store::StoreError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use std::fmt;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub issues: Vec<Issue>,
    /// Headers the error response carries besides the OperationOutcome (a 410 Gone names
    /// the deleted version's ETag and Last-Modified, which clients use to read history).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, issue: Issue) -> Self {
        ApiError {
            status,
            issues: vec![issue],
            headers: Vec::new(),
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Issue::error("invalid", msg))
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, Issue::error("not-found", msg))
    }

    /// A read refused on what the resource holds (outside a patient app's compartment, or
    /// outside its scope's query restriction), or of a deleted resource by a caller so
    /// confined, answers exactly as a resource that does not exist: a 403 (or a 410) would
    /// tell the app which ids exist, and so which MRN is a patient here.
    pub fn unseen(rtype: &str, id: &str) -> Self {
        StoreError::NotFound {
            resource_type: rtype.into(),
            id: id.into(),
        }
        .into()
    }

    /// Validation failures: 400 for malformed structure, 422 for well-formed but invalid content.
    pub fn invalid(issues: Vec<Issue>) -> Self {
        let structural = issues.iter().any(|i| i.code == "structure");
        let status = if structural {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        ApiError {
            status,
            issues,
            headers: Vec::new(),
        }
    }

    /// 401: no token, or one that is expired, forged or not for this server. The
    /// `WWW-Authenticate` header says so in RFC 6750's terms.
    pub fn unauthorized(msg: impl Into<String>) -> Self {
        let msg = msg.into();
        let challenge = format!(
            "Bearer realm=\"emrsync\", error=\"invalid_token\", error_description=\"{}\"",
            msg.replace(['"', '\\'], "'")
        );
        let mut e = Self::new(StatusCode::UNAUTHORIZED, Issue::error("login", msg));
        e.headers.push(("www-authenticate", challenge));
        e
    }

    /// 401 for a request without a token: the challenge names no error (RFC 6750 section 3.1).
    pub fn token_required() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            Issue::error(
                "login",
                "an access token is required: send Authorization: Bearer <token> (see /fhir/.well-known/smart-configuration)",
            ),
        );
        e.headers
            .push(("www-authenticate", "Bearer realm=\"emrsync\"".to_string()));
        e
    }

    /// 403: a valid token whose scopes or launch context do not allow the interaction.
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, Issue::error("forbidden", msg))
    }

    /// 503: the server cannot take this now; the client is told when to try again.
    pub fn busy(issue: Issue, retry_after_secs: u32) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, issue);
        e.headers
            .push(("Retry-After", retry_after_secs.to_string()));
        e
    }

    pub fn unknown_type(rtype: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Issue::error("not-supported", format!("unknown resource type '{rtype}'")),
        )
    }

    /// Prefix each issue's diagnostics (e.g. with the Bundle entry it came from).
    pub fn in_context(mut self, prefix: &str) -> Self {
        for i in &mut self.issues {
            i.diagnostics = format!("{prefix}: {}", i.diagnostics);
        }
        self
    }

    pub fn status_line(&self) -> String {
        format!(
            "{} {}",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or("")
        )
    }
}

impl From<crate::auth::Denied> for ApiError {
    fn from(d: crate::auth::Denied) -> Self {
        ApiError::forbidden(d.0)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: Vec<&str> = self.issues.iter().map(|i| i.diagnostics.as_str()).collect();
        write!(f, "{}: {}", self.status, text.join("; "))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        builder.content_type("application/fhir+json; charset=utf-8");
        if self.status == StatusCode::UNAUTHORIZED {
            builder.insert_header(("WWW-Authenticate", "Bearer realm=\"emrsync\""));
        }
        for (name, value) in &self.headers {
            builder.insert_header((*name, value.as_str()));
        }
        builder.body(operation_outcome(&self.issues).to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if let StoreError::Invalid(issues) = e {
            return ApiError::invalid(issues);
        }
        let (status, code) = match &e {
            StoreError::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found"),
            StoreError::Gone { .. } => (StatusCode::GONE, "deleted"),
            StoreError::PreconditionFailed { .. } => (StatusCode::PRECONDITION_FAILED, "conflict"),
            StoreError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            StoreError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            StoreError::NotOwner(_) | StoreError::Held(_) => {
                (StatusCode::CONFLICT, "business-rule")
            }
            StoreError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "transient"),
            StoreError::Database(_) | StoreError::Invalid(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "exception")
            }
        };
        // The database's own words (SQL, table names, file paths) stay in the log: the client
        // is told what happened in general terms, and the log line carries its correlation id.
        let text = match &e {
            StoreError::Database(_) => {
                tracing::error!(error = %e, "store failure");
                "internal error: the server could not complete the request (logged)".to_string()
            }
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store unavailable");
                "the database is busy or unreachable; try again shortly".to_string()
            }
            _ => e.to_string(),
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return ApiError::busy(Issue::error(code, text), 1);
        }
        let mut api = ApiError::new(status, Issue::error(code, text));
        if let StoreError::Gone {
            version_id,
            last_updated,
            ..
        } = e
        {
            api.headers = vec![
                ("ETag", crate::api::render::etag(version_id)),
                ("Last-Modified", http_date(last_updated)),
            ];
        }
        api
    }
}

impl From<crate::ingest::IngestError> for ApiError {
    fn from(e: crate::ingest::IngestError) -> Self {
        use crate::ingest::IngestError as I;
        match e {
            I::Store(e) => e.into(),
            I::Invalid(issues) => ApiError::invalid(issues),
            I::BadRequest(issue) => ApiError::new(StatusCode::BAD_REQUEST, issue),
            I::Ambiguous(m) => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                Issue::error("duplicate", m),
            ),
            I::Unprocessable(m) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Issue::error("processing", m),
            ),
            I::TooLarge(m) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, Issue::error("too-costly", m))
            }
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::busy(Issue::error("transient", e.to_string()), 1)
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        StoreError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_keep_their_words_in_the_log() {
        let sql = "no such table: resources_x (SELECT * FROM resources_x WHERE ...)";
        for (e, status) in [
            (StoreError::Database(sql.into()), 500),
            (StoreError::Unavailable(sql.into()), 503),
        ] {
            let api = ApiError::from(e);
            assert_eq!(api.status.as_u16(), status);
            let said = &api.issues[0].diagnostics;
            assert!(
                !said.contains("resources_x") && !said.contains("SELECT"),
                "{said}"
            );
        }
        // what the client can act on is still said
        let api = ApiError::from(StoreError::Conflict("a concurrent write won".into()));
        assert!(api.issues[0].diagnostics.contains("concurrent write"));
    }
}
