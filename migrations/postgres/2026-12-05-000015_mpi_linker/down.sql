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
