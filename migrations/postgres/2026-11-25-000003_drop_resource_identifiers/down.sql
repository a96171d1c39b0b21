-- Back to the identifier index of the foundation migration.
CREATE TABLE resource_identifiers (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    system TEXT NOT NULL,                  -- '' when the identifier has no system
    value TEXT NOT NULL
);
CREATE INDEX resource_identifiers_lookup ON resource_identifiers (resource_type, value, system);
CREATE INDEX resource_identifiers_owner ON resource_identifiers (resource_type, resource_id);
