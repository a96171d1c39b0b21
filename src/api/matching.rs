//! `POST [base]/Patient/$match` (R4): the Patients of the index that may be the person a
//! client describes, as a searchset Bundle, best first, each with its probability
//! (`search.score`), its grade (the `match-grade` extension) and why: every field compared,
//! its level of agreement and its weight (`docs/identity.md`). A client sees only the Patients
//! its token may read.

use super::AppState;
use super::context::RequestContext;
use super::crud::resource_body;
use super::error::ApiError;
use super::render;
use crate::auth::Interaction;
use crate::identity::{Candidate, Grade, Person};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

/// Results at most, whatever `count` asks.
const MAX_COUNT: usize = 100;
const DEFAULT_COUNT: usize = 10;
const MATCH_GRADE: &str = "http://hl7.org/fhir/StructureDefinition/match-grade";
const MATCH_DETAIL: &str = "http://emrsync.org/fhir/StructureDefinition/match-detail";

/// What the client asked: the Patient to match, only certain matches or not, how many.
struct Asked {
    patient: Value,
    only_certain: bool,
    count: usize,
}

pub async fn patient(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    // matching is a search of Patients: a token that may not search them may not match
    ctx.grant.reach(Interaction::Search, "Patient")?;
    if !state.mpi_on {
        return Err(ApiError::new(
            actix_web::http::StatusCode::NOT_IMPLEMENTED,
            crate::fhir::Issue::error(
                "not-supported",
                "this server runs without its master patient index (--no-mpi): nothing to match against",
            ),
        ));
    }
    let body = resource_body(&state, &req, payload).await?;
    let asked = asked(body)?;
    // the Patient described is checked as a write of it would be (nothing is stored)
    let accepted = ctx
        .writer(&state.ingest)
        .accept(asked.patient, "Patient", ctx.lenient)
        .map_err(ApiError::from)?;
    let person = Person::of(&accepted.resource);
    let (store, mpi) = (state.store.clone(), state.mpi.clone());
    let found = web::block(move || store.read(|conn| mpi.find(conn, &person, None))).await??;
    let mut entries = Vec::new();
    for c in found {
        let wanted = match asked.only_certain {
            true => c.scored.grade == Grade::Certain,
            false => c.scored.grade > Grade::CertainlyNot,
        };
        let id = c.version.id.clone();
        let readable = ctx
            .grant
            .check(Interaction::Read, "Patient", &id, || c.version.json())
            .is_ok();
        if wanted && readable {
            entries.push(entry(&state.base_url, &c));
        }
        if entries.len() == asked.count {
            break;
        }
    }
    let total = entries.len() as i64;
    let bundle = crate::fhir::bundle::bundle("searchset", Some(total), Vec::new(), entries);
    render::fhir(StatusCode::OK, &bundle, &ctx)
}

/// The operation's parameters (a `Parameters` resource, or the Patient alone).
fn asked(body: Value) -> Result<Asked, ApiError> {
    if body["resourceType"] == "Patient" {
        return Ok(Asked {
            patient: body,
            only_certain: false,
            count: DEFAULT_COUNT,
        });
    }
    if body["resourceType"] != "Parameters" {
        return Err(ApiError::bad_request(
            "$match takes a Parameters resource (or a Patient)",
        ));
    }
    let mut asked = Asked {
        patient: Value::Null,
        only_certain: false,
        count: DEFAULT_COUNT,
    };
    for p in body["parameter"].as_array().into_iter().flatten() {
        match p["name"].as_str().unwrap_or("") {
            "resource" => asked.patient = p["resource"].clone(),
            "onlyCertainMatches" => {
                asked.only_certain = p["valueBoolean"].as_bool().ok_or_else(|| {
                    ApiError::bad_request("onlyCertainMatches: a valueBoolean is needed")
                })?;
            }
            "count" => {
                let n = p["valueInteger"]
                    .as_u64()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        ApiError::bad_request("count: a positive valueInteger is needed")
                    })?;
                asked.count = (n as usize).min(MAX_COUNT);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "{other}: not a parameter of $match (resource, onlyCertainMatches, count)"
                )));
            }
        }
    }
    match asked.patient["resourceType"].as_str() {
        Some("Patient") => Ok(asked),
        None => Err(ApiError::bad_request(
            "the resource parameter (the Patient to match) is missing",
        )),
        Some(other) => Err(ApiError::bad_request(format!(
            "the resource parameter is a {other}: $match matches a Patient"
        ))),
    }
}

/// A found Patient as a searchset entry, with its score, grade and the fields compared.
fn entry(base: &str, c: &Candidate) -> Value {
    let s = &c.scored;
    let fields: Vec<Value> = s
        .parts
        .iter()
        .map(|p| {
            json!({"url": "field", "extension": [
                {"url": "name", "valueCode": p.field},
                {"url": "level", "valueCode": p.level},
                {"url": "weight", "valueDecimal": (p.weight * 100.0).round() / 100.0},
            ]})
        })
        .collect();
    let mut detail = vec![json!({"url": "rule", "valueCode": s.rule})];
    detail.extend(fields);
    json!({
        "fullUrl": format!("{base}/Patient/{}", c.version.id),
        "resource": c.version.json(),
        "search": {
            "mode": "match",
            "score": (s.probability * 1e4).round() / 1e4,
            "extension": [
                {"url": MATCH_GRADE, "valueCode": s.grade.code()},
                {"url": MATCH_DETAIL, "extension": detail},
            ],
        },
    })
}
