-- The master patient index (src/identity/).
-- Each Patient filed under the blocking keys its demographics give (src/identity/blocking.rs),
-- written in the Patient's write transaction. Keys are SHA-256 digests (hex), so the table
-- holds no names or dates in clear.
CREATE TABLE mpi_keys (
    key TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (key, patient_id)
);
CREATE INDEX mpi_keys_patient ON mpi_keys (patient_id);

-- What the matcher compares of each filed Patient (src/identity/person.rs), normalised, so that
-- scoring a candidate reads these few fields and not the whole resource.
CREATE TABLE mpi_people (
    patient_id TEXT PRIMARY KEY NOT NULL,
    person TEXT NOT NULL
);

-- Each source Patient's enterprise identity (person): by the matcher (rule identifier or
-- fields, with its score and grade), as the first record of its person (rule new), or by a
-- person's decision (decided_by set: the matcher never overrules it).
CREATE TABLE mpi_links (
    patient_id TEXT PRIMARY KEY NOT NULL,
    person_id TEXT NOT NULL,
    probability REAL NOT NULL,
    grade TEXT NOT NULL,
    rule TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    decided_by TEXT
);
CREATE INDEX mpi_links_person ON mpi_links (person_id);

-- Every change of a link, kept: linked, moved, unlinked, decided.
CREATE TABLE mpi_link_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    patient_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    action TEXT NOT NULL,
    probability REAL NOT NULL,
    grade TEXT NOT NULL,
    rule TEXT NOT NULL,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL,
    who TEXT NOT NULL
);
CREATE INDEX mpi_link_history_patient ON mpi_link_history (patient_id);

-- Pairs the matcher is unsure about (probable or possible), for a person to decide: the same
-- person, or not. A decision is kept and never overruled by the matcher.
CREATE TABLE mpi_reviews (
    id TEXT PRIMARY KEY NOT NULL,
    patient_id TEXT NOT NULL,
    other_id TEXT NOT NULL,
    probability REAL NOT NULL,
    grade TEXT NOT NULL,
    detail TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT,
    UNIQUE (patient_id, other_id)
);
CREATE INDEX mpi_reviews_status ON mpi_reviews (status);
