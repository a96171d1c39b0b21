-- Every version of every resource, in commit order (seq drives system and type history).
CREATE TABLE resource_versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,          -- microseconds since the Unix epoch
    method TEXT NOT NULL,                  -- POST, PUT, PATCH or DELETE
    deleted BOOLEAN NOT NULL,
    content TEXT NOT NULL,                 -- canonical JSON; empty for a delete
    correlation_id TEXT NOT NULL,
    -- two writers that both read version N cannot both write N+1: exactly one wins
    UNIQUE (resource_type, resource_id, version_id)
);
CREATE INDEX resource_versions_by_type ON resource_versions (resource_type, seq);
CREATE INDEX resource_versions_by_time ON resource_versions (last_updated);

-- The current version of each resource.
CREATE TABLE resources (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    PRIMARY KEY (resource_type, resource_id)
);

-- Identifiers of current versions, for If-None-Exist and conditional interactions.
CREATE TABLE resource_identifiers (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    system TEXT NOT NULL,                  -- '' when the identifier has no system
    value TEXT NOT NULL
);
CREATE INDEX resource_identifiers_lookup ON resource_identifiers (resource_type, value, system);
CREATE INDEX resource_identifiers_owner ON resource_identifiers (resource_type, resource_id);

-- Transactional outbox: one row per change, written with the change, consumed by subscriptions.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    action TEXT NOT NULL,                  -- create, update or delete
    correlation_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Audit trail: who did what, when, with what outcome, under which correlation id.
CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,                  -- create, update, patch, delete, transaction, ...
    resource_type TEXT,
    resource_id TEXT,
    version_id BIGINT,
    outcome TEXT NOT NULL,                 -- success or failure
    correlation_id TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX audit_events_by_correlation ON audit_events (correlation_id);
