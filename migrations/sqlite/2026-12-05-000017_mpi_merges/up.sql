-- Persons merged by a person (src/identity/decisions.rs): kept, undone or not, as the audit
-- trail of each merge; the link history says what each record went through.
CREATE TABLE mpi_merges (
    id TEXT PRIMARY KEY NOT NULL,
    from_person TEXT NOT NULL,
    into_person TEXT NOT NULL,
    patients TEXT NOT NULL,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL,
    who TEXT NOT NULL,
    undone_at BIGINT,
    undone_by TEXT
);
CREATE INDEX mpi_merges_from ON mpi_merges (from_person);
