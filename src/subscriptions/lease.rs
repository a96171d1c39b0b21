//! Which process sends a subscription's next notification: a lease on its row, taken in one
//! statement for every subscription with something due, and released when the attempt's
//! outcome is recorded (see `outcome`). A process that dies holding a lease blocks that
//! subscription only until the lease runs out.

use super::registry::{Subscriber, status};
use crate::store::DbConnection;
use crate::store::schema::subscriptions;
use crate::store::{Store, StoreError};
use diesel::prelude::*;

/// How many subscriptions one claim takes at most; a full claim claims again at once.
pub const CLAIM_LIMIT: i64 = 256;

/// Lease to `owner`, until `now + margin + the subscription's timeout`, every subscription
/// (up to `CLAIM_LIMIT`) that has a handshake, queued events or a heartbeat due, is served by
/// REST hook or by one of `sockets` (the websocket subscriptions whose socket is open here),
/// and is neither leased nor waiting for a retry. Returns them as leased, in id order.
///
/// The rows are returned by the statement that takes the lease, as they are then, so a copy
/// can never be stale (another process delivering and releasing between a read and the
/// lease would otherwise have its events sent again). On PostgreSQL the rows are locked in
/// id order (as every writer of these rows takes them) and rows another process is claiming
/// are skipped, not waited for.
pub fn claim(
    store: &Store,
    owner: &str,
    now: i64,
    margin: i64,
    sockets: &[String],
) -> Result<Vec<Subscriber>, StoreError> {
    use subscriptions::dsl as s;
    macro_rules! due {
        () => {{
            let heartbeat_due = s::handshake_done.eq(true).and(
                (s::heartbeat_secs * 1_000_000i64 + s::last_sent_at.nullable())
                    .le(now)
                    .assume_not_null(),
            );
            let something = s::handshake_done
                .eq(false)
                .or(s::delivered_through.lt(s::events_since_start))
                .or(heartbeat_due);
            s::subscriptions
                .filter(s::status.ne(status::OFF))
                .filter(
                    s::channel
                        .eq("rest-hook")
                        .or(s::channel.eq("websocket").and(s::id.eq_any(sockets))),
                )
                .filter(s::lease_until.lt(now))
                .filter(s::next_attempt_at.le(now))
                .filter(something)
                .order(s::id)
                .limit(CLAIM_LIMIT)
                .select(s::id)
        }};
    }
    macro_rules! lease {
        ($ids:expr, $c:expr) => {
            match $ids.is_empty() {
                true => Vec::new(),
                false => diesel::update(s::subscriptions.filter(s::id.eq_any($ids)))
                    .set((
                        s::lease_until.eq(s::timeout_secs * 1_000_000i64 + (now + margin)),
                        s::lease_owner.eq(owner),
                    ))
                    .returning(Subscriber::as_returning())
                    .get_results($c)?,
            }
        };
    }
    let mut taken: Vec<Subscriber> = store.write_rows(|c| {
        Ok(match c {
            DbConnection::Pg(c) => {
                let ids: Vec<String> = due!().for_update().skip_locked().load(c)?;
                lease!(&ids, c)
            }
            // one writer: nothing can change the rows between the two statements
            DbConnection::Sqlite(c) => {
                let ids: Vec<String> = due!().load(c)?;
                lease!(&ids, c)
            }
        })
    })?;
    taken.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(taken)
}
