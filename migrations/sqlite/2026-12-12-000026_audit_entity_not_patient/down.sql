UPDATE audit_events SET entity_key = patient_key
    WHERE entity_key IS NULL AND resource_type = 'Patient'
    AND patient = 'Patient/' || resource_id;
DROP INDEX audit_events_by_entity_key;
CREATE INDEX audit_events_by_entity_key ON audit_events (entity_key);
