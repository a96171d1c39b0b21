//! Work a migration leaves for the server: a migration is SQL only, but filling a new index for
//! what is already stored needs the Rust that computes it. Such a migration adds a row to
//! `pending_backfills`; right after migrating, each pending backfill runs and its row is deleted
//! only when it finished, so a crash halfway leaves it to run again at the next start (each is
//! safe to run twice).

use super::db::DbConnection;
use super::error::StoreError;
use diesel::prelude::*;
use diesel::sql_types::Text;

#[derive(QueryableByName)]
struct Pending {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Run every pending backfill, in name order.
pub fn run_pending(conn: &mut DbConnection) -> Result<(), StoreError> {
    let pending: Vec<Pending> =
        diesel::sql_query("SELECT name FROM pending_backfills ORDER BY name").load(conn)?;
    for Pending { name } in pending {
        let n = match name.as_str() {
            // the resources kept before the full-text index existed
            "search_text" => super::search_text::fill(conn)?,
            // Subscriptions get the server-defined `patient` parameter
            "subscription_patient" => super::search_index::reindex(conn, "Subscription")?,
            // three-part composites are indexed from migration 000028 on
            "molecular_sequence_coordinates" => {
                super::search_index::reindex(conn, "MolecularSequence")?
            }
            // contained resources are indexed from migration 000030 on
            "search_contained" => super::search_index::reindex_containers(conn)?,
            // the audit trail's rows become blocks (migration 000040)
            "audit_blocks" => super::audit::convert(conn)?,
            // an agent's user and client are terms of their own (migration 000042)
            "audit_agent_parts" => super::audit::post_again(conn)?,
            other => {
                tracing::warn!(
                    backfill = other,
                    "a backfill this build does not know is left pending"
                );
                continue;
            }
        };
        tracing::info!(backfill = %name, resources = n, "backfill done");
        // (a name matched above: letters and underscores only)
        diesel::sql_query(format!(
            "DELETE FROM pending_backfills WHERE name = '{name}'"
        ))
        .execute(conn)?;
    }
    Ok(())
}
