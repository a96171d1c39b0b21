-- Identifiers and birth dates are no longer filed in mpi_keys: the search index answers them
-- (src/identity/index.rs, searched). The index is emptied and filed again at start-up
-- (Mpi::refile), without those keys; links, reviews and their history are kept.
DELETE FROM mpi_keys;
DELETE FROM mpi_people;

-- Persons whose golden record is to be built again (src/identity/golden.rs): marked in the
-- transaction that changed their links or records, cleared in the one that writes the record.
CREATE TABLE mpi_stale (
    person_id TEXT PRIMARY KEY NOT NULL,
    since BIGINT NOT NULL
);
