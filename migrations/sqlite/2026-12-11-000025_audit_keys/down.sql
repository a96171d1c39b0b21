DROP INDEX audit_events_by_entity_key;
DROP INDEX audit_events_by_patient_key;
CREATE INDEX audit_events_by_entity ON audit_events (resource_type, resource_id);
CREATE INDEX audit_events_by_patient ON audit_events (patient, recorded_at);
ALTER TABLE audit_events DROP COLUMN entity_key;
ALTER TABLE audit_events DROP COLUMN patient_key;
