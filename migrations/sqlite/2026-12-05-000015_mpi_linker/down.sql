CREATE TABLE mpi_links_rowid (
    patient_id TEXT PRIMARY KEY NOT NULL,
    person_id TEXT NOT NULL,
    probability REAL NOT NULL,
    grade TEXT NOT NULL,
    rule TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    decided_by TEXT
);
INSERT INTO mpi_links_rowid
    SELECT patient_id, person_id, probability, grade, rule, linked_at, decided_by FROM mpi_links;
DROP TABLE mpi_links;
ALTER TABLE mpi_links_rowid RENAME TO mpi_links;
CREATE INDEX mpi_links_person ON mpi_links (person_id);
DROP TABLE mpi_people;
CREATE TABLE mpi_people (
    patient_id TEXT PRIMARY KEY NOT NULL,
    person TEXT NOT NULL
);
DROP TABLE mpi_keys;
CREATE TABLE mpi_keys (
    key TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (key, patient_id)
);
CREATE INDEX mpi_keys_patient ON mpi_keys (patient_id);
