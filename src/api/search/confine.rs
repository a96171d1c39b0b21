//! A search confined to what the caller's token may search: each type searched must be allowed,
//! and where the token's reach is limited (one patient's compartment, a v2 query restriction
//! such as `?category=laboratory`), the limit is added to the base type and to every chain and
//! `_has` inside, so that no criterion reads what the token may not.

use super::request::SearchRequest;
use crate::api::error::ApiError;
use crate::auth::{Denied, Grant, Interaction};
use crate::fhir::search::filter::Filter;

pub fn confine(grant: &Grant, request: &mut SearchRequest) -> Result<(), ApiError> {
    if request.all_types {
        if grant.reaches_everything(Interaction::Search) {
            return Ok(());
        }
        return Err(ApiError::forbidden(
            "a search of every type needs a scope over every type (such as system/*.rs); name the types with _type",
        ));
    }
    for (rtype, filters) in &mut request.filters {
        for f in filters.iter_mut() {
            confine_inner(grant, f)?;
        }
        if let Some(c) = grant.search_limit(rtype)? {
            filters.push(c);
        }
    }
    Ok(())
}

/// Confine the resources a chain or `_has` looks at. A chain target the caller may not search
/// is dropped (it can match nothing for this caller); a chain left with none is refused.
fn confine_inner(grant: &Grant, filter: &mut Filter) -> Result<(), Denied> {
    match filter {
        Filter::Chain { param, targets } => {
            let mut allowed = Vec::with_capacity(targets.len());
            let mut refusal = None;
            for (rtype, mut inner) in std::mem::take(targets) {
                match confine_one(grant, &rtype, &mut inner) {
                    Ok(()) => allowed.push((rtype, inner)),
                    Err(d) => refusal = Some(d),
                }
            }
            if allowed.is_empty() {
                return Err(refusal.unwrap_or_else(|| {
                    Denied(format!("the chain on {} reaches nothing", param.code))
                }));
            }
            *targets = allowed;
            Ok(())
        }
        Filter::Has {
            source_type, inner, ..
        } => confine_one(grant, source_type, inner),
        Filter::Not(inner) => confine_inner(grant, inner),
        Filter::And(parts) | Filter::Or(parts) => {
            parts.iter_mut().try_for_each(|p| confine_inner(grant, p))
        }
        Filter::Clause(_) | Filter::Compartment { .. } | Filter::Text(_) => Ok(()),
    }
}

fn confine_one(grant: &Grant, rtype: &str, inner: &mut Filter) -> Result<(), Denied> {
    confine_inner(grant, inner)?;
    if let Some(c) = grant.search_limit(rtype)? {
        *inner = Filter::And(vec![inner.clone(), c]);
    }
    Ok(())
}
