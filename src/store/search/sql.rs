//! Building one SQL statement for either backend: values are always bound, never spliced, with
//! numbered placeholders (`$1` on PostgreSQL, `?1` on SQLite) handed out as the text is written.

use crate::store::db::DbConnection;
use crate::store::error::StoreError;
use crate::store::versions::{Method, Version};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Text};

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub enum Bind {
    Text(String),
    Int(i64),
    Float(f64),
}

pub struct Sql {
    pub binds: Vec<Bind>,
    pub pg: bool,
    aliases: usize,
}

impl Sql {
    pub fn new(pg: bool) -> Sql {
        Sql {
            binds: Vec::new(),
            pg,
            aliases: 0,
        }
    }

    /// Bind `b` and return its placeholder.
    pub fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        let n = self.binds.len();
        if self.pg {
            format!("${n}")
        } else {
            format!("?{n}")
        }
    }

    pub fn text(&mut self, v: &str) -> String {
        self.bind(Bind::Text(v.to_string()))
    }

    /// A table alias not used elsewhere in the statement (`s1`, `s2`, ...), so that nested
    /// subqueries never capture each other's columns.
    pub fn alias(&mut self, stem: &str) -> String {
        self.aliases += 1;
        format!("{stem}{}", self.aliases)
    }

    /// Text compared byte by byte on both backends (SQLite's default; PostgreSQL's "C").
    pub fn bytewise(&self, expr: &str) -> String {
        if self.pg {
            format!("{expr} COLLATE \"C\"")
        } else {
            expr.to_string()
        }
    }

    /// `expr` in a form SQLite's planner will not answer from an index, steering it to the
    /// primary key (PostgreSQL plans from statistics and needs no hint).
    pub fn no_index(&self, expr: &str) -> String {
        if self.pg {
            expr.to_string()
        } else {
            format!("+{expr}")
        }
    }

    /// `column` starts with `prefix`, in a form each backend can answer from an index
    /// (GLOB on SQLite, whose LIKE ignores case; LIKE on PostgreSQL, text_pattern_ops index).
    pub fn starts_with(&mut self, column: &str, prefix: &str) -> String {
        if self.pg {
            let p = self.text(&format!("{}%", escape_like(prefix)));
            format!("{column} LIKE {p} ESCAPE '\\'")
        } else {
            let p = self.text(&format!("{}*", escape_glob(prefix)));
            format!("{column} GLOB {p}")
        }
    }

    pub fn contains(&mut self, column: &str, part: &str) -> String {
        if self.pg {
            let p = self.text(&format!("%{}%", escape_like(part)));
            format!("{column} LIKE {p} ESCAPE '\\'")
        } else {
            let p = self.text(&format!("*{}*", escape_glob(part)));
            format!("{column} GLOB {p}")
        }
    }
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn escape_glob(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '*' | '?' | '[' => format!("[{c}]"),
            c => c.to_string(),
        })
        .collect()
}

/// The columns of a version, as every search statement selects them (`v.` prefixed).
pub const VERSION_COLUMNS: &str = "v.seq, v.resource_type, v.resource_id, v.version_id, \
     v.last_updated, v.method, v.deleted, v.content";

#[derive(QueryableByName)]
pub struct VersionRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    resource_type: String,
    #[diesel(sql_type = Text)]
    resource_id: String,
    #[diesel(sql_type = BigInt)]
    version_id: i64,
    #[diesel(sql_type = BigInt)]
    last_updated: i64,
    #[diesel(sql_type = Text)]
    method: String,
    #[diesel(sql_type = Bool)]
    deleted: bool,
    #[diesel(sql_type = Text)]
    content: String,
}

impl From<VersionRow> for Version {
    fn from(r: VersionRow) -> Version {
        Version {
            resource_type: r.resource_type,
            id: r.resource_id,
            version_id: r.version_id,
            last_updated: r.last_updated,
            method: Method::parse(&r.method),
            deleted: r.deleted,
            content: r.content.into(),
            seq: r.seq,
        }
    }
}

#[derive(QueryableByName)]
pub struct Count {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

#[derive(QueryableByName)]
pub struct TypeAndId {
    #[diesel(sql_type = Text)]
    pub resource_type: String,
    #[diesel(sql_type = Text)]
    pub resource_id: String,
}

/// Run `sql` with `binds` and read every row as a `T`.
pub fn load<T>(conn: &mut DbConnection, sql: &str, binds: &[Bind]) -> Result<Vec<T>, StoreError>
where
    T: QueryableByName<diesel::sqlite::Sqlite> + QueryableByName<diesel::pg::Pg> + 'static,
{
    macro_rules! run {
        ($c:expr, $backend:ty) => {{
            let mut q = diesel::sql_query(sql).into_boxed::<$backend>();
            for b in binds {
                q = match b {
                    Bind::Text(s) => q.bind::<Text, _>(s.clone()),
                    Bind::Int(i) => q.bind::<BigInt, _>(*i),
                    Bind::Float(f) => q.bind::<Double, _>(*f),
                };
            }
            q.load::<T>($c)?
        }};
    }
    Ok(match conn {
        DbConnection::Sqlite(c) => run!(c, diesel::sqlite::Sqlite),
        DbConnection::Pg(c) => run!(c, diesel::pg::Pg),
    })
}
