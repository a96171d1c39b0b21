-- The terminology service (src/terminology/): what the store's CodeSystems, ValueSets and
-- ConceptMaps say, in rows its operations read. Written in the transaction of each version of
-- those resources (terminology/index.rs), or by an importer of a release's files.

-- Each canonical resource by its url and version: one resource per url and version ('' when
-- it has none). content is CodeSystem.content (NULL for the others).
CREATE TABLE term_resources (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    url TEXT NOT NULL,
    version TEXT NOT NULL,
    name TEXT,
    status TEXT,
    content TEXT,
    PRIMARY KEY (resource_type, resource_id)
);
CREATE UNIQUE INDEX term_resources_url ON term_resources (resource_type, url, version);

-- A code system's concepts, by its CodeSystem's resource id, in the order the system gives
-- them (position). properties and designations are JSON arrays as in CodeSystem.concept (NULL
-- when there are none).
CREATE TABLE term_concepts (
    system_id TEXT NOT NULL,
    code TEXT NOT NULL,
    position BIGINT NOT NULL,
    display TEXT,
    definition TEXT,
    inactive BOOLEAN NOT NULL,
    properties TEXT,
    designations TEXT,
    PRIMARY KEY (system_id, code)
);

-- Its hierarchy: each concept's parents (from nesting, the parent property or an is-a
-- relationship of a release file).
CREATE TABLE term_parents (
    system_id TEXT NOT NULL,
    child TEXT NOT NULL,
    parent TEXT NOT NULL,
    PRIMARY KEY (system_id, child, parent)
);

-- The FHIR packages loaded: a package loaded again with the same bytes is not read again.
CREATE TABLE term_packages (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    resources BIGINT NOT NULL,
    loaded_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
