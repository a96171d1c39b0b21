-- A row whose entity is its patient (a Patient read, written or searched by id) keeps no
-- entity key: the patient key finds it (src/store/audit.rs `keys`, src/ops/audit/search.rs),
-- and one index fewer takes a random key on every such row (docs/performance.md).
UPDATE audit_events SET entity_key = NULL
    WHERE entity_key = patient_key AND resource_type = 'Patient'
    AND patient = 'Patient/' || resource_id;
DROP INDEX audit_events_by_entity_key;
CREATE INDEX audit_events_by_entity_key ON audit_events (entity_key, seq) WHERE entity_key IS NOT NULL;
