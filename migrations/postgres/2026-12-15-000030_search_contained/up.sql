-- Contained resources in the search index (src/fhir/search/contained.rs): each resource a
-- container holds is indexed with its own type's parameters, in the index tables, under its key
-- `Container/id#local` as resource_id. This table lists them: what `_contained=true` searches
-- start from, and what a container's update or delete clears.
CREATE TABLE search_contained (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    container_type TEXT NOT NULL,
    container_id TEXT NOT NULL,
    local_id TEXT NOT NULL,
    PRIMARY KEY (resource_type, resource_id)
);
CREATE INDEX search_contained_container ON search_contained (container_type, container_id);
-- the resources stored before this index existed: their contained resources, and their local
-- references (`#x`), which the index skipped until now
INSERT INTO pending_backfills (name) VALUES ('search_contained');
