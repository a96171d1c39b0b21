-- The master patient index's blocking keys: each Patient filed under the keys its
-- demographics give (src/identity/blocking.rs), written in the Patient's write transaction.
-- Keys are SHA-256 digests (hex), so the table holds no names or dates in clear.
CREATE TABLE mpi_keys (
    key TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (key, patient_id)
);
CREATE INDEX mpi_keys_patient ON mpi_keys (patient_id);
