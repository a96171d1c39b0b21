-- The audit trail as FHIR AuditEvents (src/store/audit.rs): each row also says which patient
-- the access concerned, the client's network address and a search's query; and each is
-- sealed into a hash chain (its place and the hash over the previous row's hash and its own
-- content), so that a row edited, removed or moved is found by `emrsync audit verify`.
ALTER TABLE audit_events ADD COLUMN kind TEXT NOT NULL DEFAULT 'rest';
ALTER TABLE audit_events ADD COLUMN patient TEXT;
ALTER TABLE audit_events ADD COLUMN address TEXT;
ALTER TABLE audit_events ADD COLUMN query TEXT;
ALTER TABLE audit_events ADD COLUMN chain_pos BIGINT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
CREATE INDEX audit_events_by_time ON audit_events (recorded_at);
CREATE INDEX audit_events_by_patient ON audit_events (patient, recorded_at);
CREATE INDEX audit_events_by_actor ON audit_events (actor, recorded_at);
CREATE INDEX audit_events_by_entity ON audit_events (resource_type, resource_id);
CREATE UNIQUE INDEX audit_events_chain ON audit_events (chain_pos);
CREATE INDEX audit_events_unsealed ON audit_events (seq) WHERE chain_pos IS NULL;
