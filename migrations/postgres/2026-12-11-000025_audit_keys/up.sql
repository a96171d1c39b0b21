-- The audit trail's patient and entity looked up by a 64-bit key of the reference (the first
-- 8 bytes of its SHA-256, src/store/audit.rs `key_of`), not by the text: two indexes of random
-- 40-byte keys made each audit row cost about 20 µs more to write (docs/performance.md). A
-- lookup checks the text too, so a collision of keys finds nothing wrong. Rows kept before
-- are given their keys by the binary right after this migration.
ALTER TABLE audit_events ADD COLUMN patient_key BIGINT;
ALTER TABLE audit_events ADD COLUMN entity_key BIGINT;
DROP INDEX audit_events_by_patient;
DROP INDEX audit_events_by_entity;
CREATE INDEX audit_events_by_patient_key ON audit_events (patient_key, seq);
CREATE INDEX audit_events_by_entity_key ON audit_events (entity_key, seq);
