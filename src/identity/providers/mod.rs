//! The provider registry: Practitioners, Organizations and PractitionerRoles from every
//! source, each linked to one enterprise provider, as the MPI links Patients to persons. The
//! attending from the hospital EMR and the ordering physician from the lab are one
//! Practitioner when their NPI says so, or their name and an organization in common
//! (`rules`); pairs the rules are unsure about wait for a person (the admin API), whose
//! decision the rules never overrule.
//!
//! Every record is filed in its write's transaction (`resolve`, through the MPI's
//! `IdentityResolver`), linked right after by the MPI's linker task (`linking`), and a provider
//! of two or more records gets a golden record (`golden`).

pub mod golden;
pub mod linking;
pub mod record;
pub mod rules;
pub mod tables;

use crate::ingest::{Channel, Source};
use crate::store::{DbConnection, StoreError, Version};
use record::{KINDS, Provider};

/// File the version just written of a registry record (of `KINDS`), in the write's
/// transaction; nothing for other types.
pub fn resolve(
    conn: &mut DbConnection,
    source: &Source,
    version: &Version,
) -> Result<(), StoreError> {
    let Some(rtype) = KINDS.into_iter().find(|k| *k == version.resource_type) else {
        return Ok(());
    };
    let refuse = |text: String| {
        Err(StoreError::Invalid(vec![
            crate::fhir::Issue::error("business-rule", text).at(rtype),
        ]))
    };
    // a golden record is the registry's to write (`identity::mpi` says why)
    if version.version_id > 1
        && source.channel != Channel::Mpi
        && tables::was_a_provider(conn, rtype, &version.id)?
    {
        return refuse(format!(
            "{rtype}/{} is a golden record, written by the provider registry alone from its records: change those",
            version.id
        ));
    }
    if version.deleted {
        return tables::unfile(conn, rtype, &version.id, &source.system);
    }
    let json = version.json();
    if crate::fhir::resource::is_golden_record(&json) {
        return match source.channel {
            Channel::Mpi => Ok(()),
            _ => refuse(format!(
                "the golden-record tag is the registry's own: a source's {rtype} cannot carry it"
            )),
        };
    }
    let Some(fields) = Provider::of(rtype, &json) else {
        return Ok(());
    };
    let at = version.last_updated;
    tables::file(
        conn,
        (rtype, &version.id),
        &fields,
        (at, true, &source.system),
    )?;
    // its golden record holds the version before
    if let Some(link) = tables::link_of(conn, rtype, &version.id)? {
        tables::mark(conn, rtype, &link.provider_id)?;
    }
    Ok(())
}
