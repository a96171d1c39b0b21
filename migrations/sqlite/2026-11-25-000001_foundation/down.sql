DROP TABLE audit_events;
DROP TABLE outbox;
DROP TABLE resource_identifiers;
DROP TABLE resources;
DROP TABLE resource_versions;
