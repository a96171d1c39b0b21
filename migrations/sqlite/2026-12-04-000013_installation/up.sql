-- Values that belong to one installation and never change once made (the secret HL7v2
-- resource ids are derived under), shared by every process on the database.
CREATE TABLE installation (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
