-- The index made cheaper to write, and linking moved out of the write (src/identity/linker.rs).
-- Its rows are rebuilt from the Patients at start-up (src/identity/index.rs, refile), so the
-- old tables are dropped, not converted.

-- Keys as the first 64 bits of their SHA-256: one B-tree, no names or dates in clear. A
-- Patient's keys are found again from its row in mpi_people (what they were computed from),
-- so no index by patient is kept.
DROP TABLE mpi_keys;
CREATE TABLE mpi_keys (
    key BIGINT NOT NULL,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (key, patient_id)
);

-- pending: when the Patient was filed (microseconds) and is still to be linked to its person;
-- NULL once the linker has done so. filed_by: the source system whose write filed it.
DROP TABLE mpi_people;
CREATE TABLE mpi_people (
    patient_id TEXT PRIMARY KEY NOT NULL,
    person TEXT NOT NULL,
    pending BIGINT,
    filed_by TEXT NOT NULL
);
CREATE INDEX mpi_people_pending ON mpi_people (pending) WHERE pending IS NOT NULL;
