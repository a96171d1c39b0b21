//! `GET [base]/Patient/[id]/$everything`: the patient, every resource in its compartment and
//! what those refer to (practitioners, organisations, medications...), as a paged searchset.
//! It is a search of every compartment type at once, so it goes through the same confinement
//! as any search: a token sees only what it could have searched for itself.
//!
//! `start` and `end` are care dates: each type's clinical `date` parameter, as a search by it
//! would read it.
//!
//! A golden record's (`identity::golden`) is its person's: every one of its records'
//! compartments, read through identity.

use super::AppState;
use super::context::RequestContext;
use super::error::ApiError;
use super::path::{Id, QueryPairs};
use super::search::{SearchRequest, Types, respond};
use crate::auth::{Interaction, Reach};
use crate::fhir::search::filter::Filter;
use crate::fhir::search::filter::{compartment_of, compartment_types};
use crate::fhir::search::query::parse_clause;
use crate::fhir::search::{ParamType, SearchParams};
use crate::store::search::{Include, IncludeKind};
use actix_web::{HttpResponse, web};

pub async fn patient(
    state: web::Data<AppState>,
    Id(id): Id,
    QueryPairs(params): QueryPairs,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let id = id.to_string();

    // the patient must exist and be readable: a 404 or 403 says so before any search
    let store = state.store.clone();
    let pid = id.clone();
    let confined = !matches!(ctx.grant.reach(Interaction::Read, "Patient")?, Reach::All);
    let patient = match web::block(move || store.current("Patient", &pid)).await? {
        Err(crate::store::StoreError::Gone { .. }) if confined => {
            return Err(ApiError::unseen("Patient", &id));
        }
        found => found?,
    };
    let json = patient.json();
    ctx.grant
        .check(Interaction::Read, "Patient", &id, || &json)
        .map_err(|_| ApiError::unseen("Patient", &id))?;
    let mut patients = vec![id.clone()];
    if crate::fhir::resource::is_golden_record(&json) {
        let (store, person) = (state.store.clone(), id.clone());
        let members =
            web::block(move || store.read(|c| crate::identity::links::members(c, &person)))
                .await??;
        patients.extend(members);
    }

    let mut types: Vec<String> = Vec::new();
    let mut since = None;
    let mut care: Vec<String> = Vec::new();
    let mut rest = Vec::new();
    for (name, value) in &params {
        match name.as_str() {
            "_type" => {
                for t in value.split(',').filter(|t| !t.is_empty()) {
                    if !compartment_types().any(|c| c == t) {
                        return Err(ApiError::bad_request(format!(
                            "_type: {t} resources are not in a patient's compartment"
                        )));
                    }
                    types.push(t.to_string());
                }
            }
            "_since" => since = Some(value.clone()),
            "start" => care.push(format!("ge{value}")),
            "end" => care.push(format!("le{value}")),
            _ => rest.push((name.clone(), value.clone())),
        }
    }
    if types.is_empty() {
        // every type the token may search; named types it may not are refused (403) below
        types = compartment_types()
            .filter(|t| ctx.grant.reach(Interaction::Search, t).is_ok())
            .map(str::to_string)
            .collect();
    }

    let mut request = SearchRequest::parse(&Types::Some(types), &rest, None, ctx.lenient)?;
    for (rtype, filters) in &mut request.filters {
        filters
            .push(compartment_of(rtype, &patients).map_err(|e| ApiError::bad_request(e.message))?);
        if let Some(since) = &since {
            let clause = parse_clause(rtype, "_lastUpdated", &format!("ge{since}"))
                .map_err(|e| ApiError::bad_request(format!("_since: {e}")))?
                .expect("_lastUpdated is a parameter of every type");
            filters.push(Filter::Clause(clause));
        }
        // care dates: each type's clinical `date` parameter (an Observation's effective time,
        // an Encounter's period...), ranges overlapping; a type without one (the Patient, a
        // Medication) is not a record of care at a time, and comes whole
        let dated = SearchParams::get()
            .find(rtype, "date")
            .is_some_and(|p| p.kind == ParamType::Date);
        for bound in care.iter().filter(|_| dated) {
            let clause = parse_clause(rtype, "date", bound)
                .map_err(|e| ApiError::bad_request(format!("start/end: {e}")))?
                .expect("date is a parameter of this type");
            filters.push(Filter::Clause(clause));
        }
        request.includes.push(Include {
            kind: IncludeKind::Include,
            source_type: rtype.clone(),
            param: None,
            target_type: None,
            iterate: false,
        });
    }
    let path = format!("{}/Patient/{id}/$everything", state.base_url);
    respond(state, request, &params, &path, ctx).await
}
