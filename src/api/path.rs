//! The parts of a request's path and headers that name what it is about: the resource type,
//! the id, the version an `If-Match` expects; as functions, and as extractors that a handler
//! takes as arguments, checked before it runs.

use super::error::ApiError;
use crate::fhir::FhirId;
use crate::fhir::definitions::Definitions;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use std::future::{Ready, ready};

pub fn check_type(rtype: &str) -> Result<(), ApiError> {
    if Definitions::get().is_resource_type(rtype) {
        Ok(())
    } else {
        Err(ApiError::unknown_type(rtype))
    }
}

pub fn parse_id(id: &str) -> Result<FhirId, ApiError> {
    FhirId::parse(id).map_err(ApiError::bad_request)
}

/// `If-Match: W/"3"` (or `"3"`, or `3`) to version 3.
pub fn parse_etag(value: &str) -> Result<i64, ApiError> {
    let v = value.trim().trim_start_matches("W/").trim_matches('"');
    v.parse().map_err(|_| {
        ApiError::bad_request(format!("If-Match '{value}' is not an ETag such as W/\"3\""))
    })
}

/// `/{type}`: a resource type this server knows (404 otherwise).
#[derive(Debug, Clone)]
pub struct TypeName(pub String);

/// `/{type}/{id}`: a known resource type and a valid id.
#[derive(Debug, Clone)]
pub struct Instance {
    pub rtype: String,
    pub id: FhirId,
}

/// `If-Match`, as the version it expects (none when the header is absent).
#[derive(Debug, Clone, Copy)]
pub struct IfMatch(pub Option<i64>);

fn segment<'a>(req: &'a HttpRequest, name: &str) -> &'a str {
    req.match_info().get(name).unwrap_or("")
}

impl FromRequest for TypeName {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let rtype = segment(req, "type");
        ready(check_type(rtype).map(|()| TypeName(rtype.to_string())))
    }
}

impl FromRequest for Instance {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let rtype = segment(req, "type");
        ready(check_type(rtype).and_then(|()| {
            Ok(Instance {
                rtype: rtype.to_string(),
                id: parse_id(segment(req, "id"))?,
            })
        }))
    }
}

impl FromRequest for IfMatch {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let value = req.headers().get("if-match");
        ready(
            value
                .map(|v| parse_etag(v.to_str().unwrap_or("")))
                .transpose()
                .map(IfMatch),
        )
    }
}

/// `{id}` of a route whose type is fixed (`Patient/{id}/$everything`): a valid id.
#[derive(Debug, Clone)]
pub struct Id(pub FhirId);

impl FromRequest for Id {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse_id(segment(req, "id")).map(Id))
    }
}

/// The query string as (name, value) pairs in their order; 400 when it does not decode.
#[derive(Debug, Clone, Default)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl FromRequest for QueryPairs {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            serde_urlencoded::from_str(req.query_string())
                .map(QueryPairs)
                .map_err(|e| {
                    ApiError::bad_request(format!("the query string does not decode: {e}"))
                }),
        )
    }
}
