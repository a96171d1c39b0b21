-- The provider registry (src/identity/providers/): Practitioners, Organizations and
-- PractitionerRoles from every source, each linked to one enterprise provider.

-- What the rules compare of each filed record (providers/record.rs), and whether it waits for
-- the linker: pending is when it was filed (microseconds), NULL once linked; written says a
-- source's write filed it (not a requeue after a related record moved).
CREATE TABLE provider_records (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    fields TEXT NOT NULL,
    pending BIGINT,
    written BOOLEAN NOT NULL,
    filed_by TEXT NOT NULL,
    PRIMARY KEY (resource_type, resource_id)
);
CREATE INDEX provider_records_pending ON provider_records (pending) WHERE pending IS NOT NULL;

-- Blocking keys: an NPI, an identifier, a name's sound, a role's practitioner or organization.
CREATE TABLE provider_keys (
    key TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    PRIMARY KEY (key, resource_type, resource_id)
);
CREATE INDEX provider_keys_record ON provider_keys (resource_type, resource_id);

-- Each filed record's enterprise provider, by a rule or by a person's decision (decided_by).
CREATE TABLE provider_links (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    grade TEXT NOT NULL,
    rule TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    decided_by TEXT,
    PRIMARY KEY (resource_type, resource_id)
);
CREATE INDEX provider_links_provider ON provider_links (resource_type, provider_id);

-- Every change of a link, kept.
CREATE TABLE provider_link_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    action TEXT NOT NULL,
    grade TEXT NOT NULL,
    rule TEXT NOT NULL,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL,
    who TEXT NOT NULL
);
CREATE INDEX provider_link_history_record ON provider_link_history (resource_type, resource_id);
CREATE INDEX provider_link_history_provider ON provider_link_history (resource_type, provider_id);

-- Pairs the rules are unsure about, for a person to decide.
CREATE TABLE provider_reviews (
    id TEXT PRIMARY KEY NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    other_id TEXT NOT NULL,
    grade TEXT NOT NULL,
    detail TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT,
    UNIQUE (resource_type, resource_id, other_id)
);
CREATE INDEX provider_reviews_status ON provider_reviews (status);

-- Enterprise providers whose golden record is to be built again.
CREATE TABLE provider_stale (
    resource_type TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (resource_type, provider_id)
);
