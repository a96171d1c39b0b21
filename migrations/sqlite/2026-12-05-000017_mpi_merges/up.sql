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

-- Whether an id was ever a person's (src/identity/links.rs, was_a_person): a golden record,
-- even one whose person has no records left, is the MPI's to write.
CREATE INDEX mpi_link_history_person ON mpi_link_history (person_id);
