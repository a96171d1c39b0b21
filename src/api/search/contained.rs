//! The searchset Bundle of a `_contained=true` (or `both`) search (`store::search::contained`):
//! the containers that hold a match, each once, or (`_containedType=contained`) the matching
//! contained resources themselves, whose `fullUrl` names them inside their container
//! (`[base]/MedicationRequest/1#med1`); with `both`, the stored resources that match besides.
//! Pages go forward only (`next`), in position order.

use super::{SearchRequest, Total, shaped};
use crate::api::AppState;
use crate::api::context::RequestContext;
use crate::api::error::ApiError;
use crate::api::{paging, render};
use crate::auth::Interaction;
use crate::fhir::bundle::bundle;
use crate::fhir::search::contained::find;
use crate::store::search::{
    ContainedPage, ContainedSpec, Cursor, Returned, SearchError, search_contained,
};
use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::web;
use serde_json::{Value, json};

pub async fn respond(
    state: web::Data<AppState>,
    request: SearchRequest,
    returned: Returned,
    params: &[(String, String)],
    path: &str,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    // Containers are checked against the token one by one, after the store has counted them:
    // a count is the caller's to see only when the token reaches every container, whatever
    // its type (a patient's app would otherwise count other patients' orders).
    let whole = ctx.grant.reaches_everything(Interaction::Search);
    if !whole && (request.count_only || request.count == 0 || request.total == Total::Count) {
        return Err(ApiError::forbidden(
            "a count of _contained matches needs a token that searches every type (such as system/*.rs)",
        ));
    }
    let store = state.store.clone();
    let (mut page, request) =
        web::block(move || store.read(|c| Ok(execute(c, request, returned)))).await???;
    // a container is a search result of its own type: the token must reach it as such
    page.matches.retain(|m| {
        let v = &m.container;
        ctx.grant
            .check(Interaction::Search, &v.resource_type, &v.id, || v.json())
            .is_ok()
    });
    if !whole {
        page.total = page.total.map(|_| page.matches.len() as i64);
    }
    // a contained resource is about its container's patient
    ctx.showed(page.matches.iter().map(|m| &m.container));
    let base = &state.base_url;
    let entries: Vec<Value> = page
        .matches
        .iter()
        .filter_map(|m| {
            let container = m.container.json();
            let (full_url, resource) = match &m.local_id {
                None => (
                    format!("{base}/{}/{}", m.container.resource_type, m.container.id),
                    container,
                ),
                Some(local) => (
                    format!(
                        "{base}/{}/{}#{local}",
                        m.container.resource_type, m.container.id
                    ),
                    match find(&container, local) {
                        Some(c) => c.clone(),
                        // the index lists what the container no longer holds: say so, as
                        // the page comes out one short
                        None => {
                            tracing::error!(
                                container = %format!("{}/{}", m.container.resource_type, m.container.id),
                                local = %local,
                                "a contained resource in the index is not in its container"
                            );
                            return None;
                        }
                    },
                ),
            };
            Some(json!({
                "fullUrl": full_url,
                "resource": shaped(resource, &request),
                "search": { "mode": "match" }
            }))
        })
        .collect();
    let next = match (page.more, page.matches.last()) {
        (true, Some(last)) if !request.count_only => Some(
            Cursor {
                before: false,
                keys: Vec::new(),
                rtype: request.filters[0].0.clone(),
                id: last.position.clone(),
            }
            .encode(),
        ),
        _ => None,
    };
    let links = paging::links(path, params, next, None);
    let b = bundle("searchset", page.total, links, entries);
    render::fhir(StatusCode::OK, &b, &ctx)
}

fn execute(
    c: &mut crate::store::db::DbConnection,
    mut request: SearchRequest,
    returned: Returned,
) -> Result<(ContainedPage, SearchRequest), SearchError> {
    for f in request.filters.iter_mut().flat_map(|(_, f)| f.iter_mut()) {
        crate::identity::reading::expand(c, f)?;
    }
    let (rtype, filters) = &request.filters[0];
    let spec = ContainedSpec {
        rtype,
        filters,
        returned,
        also_stored: request.contained_and_stored,
        count: if request.count_only { 0 } else { request.count },
        after: request.cursor.as_ref().map(|c| c.id.as_str()),
        total: request.total == Total::Count || request.count_only || request.count == 0,
    };
    let mut page = search_contained(c, &spec)?;
    if page.total.is_none()
        && request.total == Total::WhenFree
        && request.cursor.is_none()
        && !page.more
    {
        page.total = Some(page.matches.len() as i64);
    }
    Ok((page, request))
}
