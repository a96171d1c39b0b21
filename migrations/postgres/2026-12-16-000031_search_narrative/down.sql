ALTER TABLE search_text ADD COLUMN narrative TSVECTOR NOT NULL DEFAULT ''::tsvector;
UPDATE search_text t SET narrative = n.narrative FROM search_narrative n
WHERE n.resource_type = t.resource_type AND n.resource_id = t.resource_id;
ALTER TABLE search_text ALTER COLUMN narrative DROP DEFAULT;
CREATE INDEX search_text_narrative ON search_text USING GIN (narrative);
DROP TABLE search_narrative;
