//! `_contained=true`: a search of the resources that stored resources contain (indexed under
//! their keys, `fhir::search::contained`), listed in `search_contained`. The same filters as
//! any search apply to each contained resource's own index rows; the page is either the
//! matching contained resources (`_containedType=contained`) or their containers, each once.
//! `_contained=both` adds the stored resources that match. Results are in the order of their
//! positions (`Type/id` of a container or stored resource, `Container/id#local` of a contained
//! one, bytewise): a page starts strictly after the last position the client saw, as other
//! searches' pages do.

use super::SearchError;
use super::filter::{Owner, filters_sql};
use super::sql::{Bind, Count, Sql, VERSION_COLUMNS, VersionRow, load};
use crate::fhir::search::filter::Filter;
use crate::store::db::DbConnection;
use crate::store::versions::Version;
use diesel::QueryableByName;
use diesel::sql_types::Text;

/// What a `_contained=true` search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// The containers, each once (`_containedType=container`, the default).
    Container,
    /// The contained resources themselves (`_containedType=contained`).
    Contained,
}

/// A search of the contained resources of one type, and the page of it wanted.
pub struct ContainedSpec<'a> {
    pub rtype: &'a str,
    pub filters: &'a [Filter],
    pub returned: Returned,
    /// The stored resources that match come too (`_contained=both`).
    pub also_stored: bool,
    pub count: i64,
    /// The position the page starts after (`ContainedMatch::position` of the last one seen).
    pub after: Option<&'a str>,
    pub total: bool,
}

/// One match: a container's current version, and which of its contained resources matched
/// (`Returned::Contained`).
pub struct ContainedMatch {
    pub container: Version,
    pub local_id: Option<String>,
    /// Where it stands in the result (`Type/id`, or `Type/id#local`).
    pub position: String,
}

pub struct ContainedPage {
    pub matches: Vec<ContainedMatch>,
    pub total: Option<i64>,
    pub more: bool,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(embed)]
    version: VersionRow,
    #[diesel(sql_type = Text)]
    position: String,
    #[diesel(sql_type = Text)]
    local_id: String,
}

/// Run `spec`: one page of matches.
pub fn search_contained(
    conn: &mut DbConnection,
    spec: &ContainedSpec,
) -> Result<ContainedPage, SearchError> {
    let pg = matches!(conn, DbConnection::Pg(_));
    let mut sql = Sql::new(pg);
    let t = sql.text(spec.rtype);
    let owner = Owner { row: "c", ty: &t };
    let mut conds = vec![format!("c.resource_type = {t}")];
    conds.extend(filters_sql(&mut sql, &owner, spec.filters, true));
    let matches = conds.join(" AND ");
    // the containers' current versions (a deleted container's contained rows went with it)
    let from = format!(
        "search_contained c JOIN resources r ON r.resource_type = c.container_type \
         AND r.resource_id = c.container_id AND r.deleted = FALSE WHERE {matches}"
    );
    let source = match spec.returned {
        Returned::Contained => format!(
            "SELECT c.resource_id AS position, c.container_type, c.container_id, c.local_id, \
             r.version_id FROM {from}"
        ),
        Returned::Container => format!(
            "SELECT DISTINCT c.container_type || '/' || c.container_id AS position, \
             c.container_type, c.container_id, '' AS local_id, r.version_id FROM {from}"
        ),
    };
    let source = if spec.also_stored {
        let r = sql.alias("r");
        let owner = Owner { row: &r, ty: &t };
        let mut conds = vec![
            format!("{r}.resource_type = {t}"),
            format!("{r}.deleted = FALSE"),
        ];
        conds.extend(filters_sql(&mut sql, &owner, spec.filters, true));
        format!(
            "{source} UNION SELECT {r}.resource_type || '/' || {r}.resource_id AS position, \
             {r}.resource_type AS container_type, {r}.resource_id AS container_id, \
             '' AS local_id, {r}.version_id FROM resources {r} WHERE {}",
            conds.join(" AND ")
        )
    } else {
        source
    };
    let total = if spec.total {
        let counted: Vec<Count> = load(
            conn,
            &format!("SELECT COUNT(*) AS n FROM ({source}) m"),
            &sql.binds,
        )?;
        Some(counted.first().map(|c| c.n).unwrap_or(0))
    } else {
        None
    };
    let position = sql.bytewise("m.position");
    let after = match spec.after {
        Some(p) => format!("{position} > {}", sql.text(p)),
        None => "TRUE".into(),
    };
    let limit = sql.bind(Bind::Int(spec.count + 1));
    let page_sql = format!(
        "SELECT {VERSION_COLUMNS}, m.position, m.local_id FROM (SELECT * FROM ({source}) m \
         WHERE {after} ORDER BY {position} LIMIT {limit}) m JOIN resource_versions v \
         ON v.resource_type = m.container_type AND v.resource_id = m.container_id \
         AND v.version_id = m.version_id ORDER BY {position}"
    );
    let mut rows: Vec<Row> = load(conn, &page_sql, &sql.binds)?;
    let more = rows.len() as i64 > spec.count;
    rows.truncate(spec.count.max(0) as usize);
    let matches = rows
        .into_iter()
        .map(|row| ContainedMatch {
            container: Version::from(row.version),
            // (a stored resource's is empty: it is returned itself)
            local_id: (spec.returned == Returned::Contained && !row.local_id.is_empty())
                .then_some(row.local_id),
            position: row.position,
        })
        .collect();
    Ok(ContainedPage {
        matches,
        total,
        more,
    })
}
