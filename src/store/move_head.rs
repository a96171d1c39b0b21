//! Moving a resource's head from one version to the next: the UPDATE every write of an
//! existing resource runs. Diesel never caches its own UPDATE statements (they have no static
//! query id), so SQLite parsed and planned this one afresh for every resource written: 9% of
//! the single writer's time under HL7v2 load. This statement has a static id and is prepared
//! once per connection.

use super::db::DbConnection;
use super::versions::Version;
use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, HasSqlType, Text};

/// `UPDATE resources SET version_id = to, last_updated = at, deleted = deleted
/// WHERE resource_type = rtype AND resource_id = id AND version_id = from`.
struct MoveHead<'a> {
    rtype: &'a str,
    id: &'a str,
    from: i64,
    to: i64,
    at: i64,
    deleted: bool,
}

/// Every `MoveHead` has the same SQL: one cached statement.
impl QueryId for MoveHead<'_> {
    type QueryId = MoveHead<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB> QueryFragment<DB> for MoveHead<'_>
where
    DB: Backend + HasSqlType<Bool>,
    str: diesel::serialize::ToSql<Text, DB>,
    i64: diesel::serialize::ToSql<BigInt, DB>,
    bool: diesel::serialize::ToSql<Bool, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE resources SET version_id = ");
        out.push_bind_param::<BigInt, _>(&self.to)?;
        out.push_sql(", last_updated = ");
        out.push_bind_param::<BigInt, _>(&self.at)?;
        out.push_sql(", deleted = ");
        out.push_bind_param::<Bool, _>(&self.deleted)?;
        out.push_sql(" WHERE resource_type = ");
        out.push_bind_param::<Text, _>(self.rtype)?;
        out.push_sql(" AND resource_id = ");
        out.push_bind_param::<Text, _>(self.id)?;
        out.push_sql(" AND version_id = ");
        out.push_bind_param::<BigInt, _>(&self.from)?;
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for MoveHead<'_> {}

/// Move `v`'s head to it from the version before; how many rows moved (0 when the head was
/// no longer there: another writer got in first).
pub fn move_head(conn: &mut DbConnection, v: &Version) -> QueryResult<usize> {
    let query = MoveHead {
        rtype: &v.resource_type,
        id: &v.id,
        from: v.version_id - 1,
        to: v.version_id,
        at: v.last_updated,
        deleted: v.deleted,
    };
    match conn {
        DbConnection::Sqlite(c) => query.execute(c),
        DbConnection::Pg(c) => query.execute(c),
    }
}
