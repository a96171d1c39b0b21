-- Sync out (src/routing/): which system each change came from (the writer's audit name, for
-- echo suppression), the changes not yet matched against the routes, the routes' versions
-- (change control: who, when, what), each target's lease and its ordered queue of outbound
-- messages with their outcome (the outbound exception queue is its `failed` rows).
ALTER TABLE outbox ADD COLUMN origin TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN routed_at BIGINT;
-- changes made before there were routes have no target
UPDATE outbox SET routed_at = created_at;
CREATE INDEX outbox_unrouted ON outbox (seq) WHERE routed_at IS NULL;

CREATE TABLE route_configs (
    version BIGINT PRIMARY KEY NOT NULL,
    recorded_at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    summary TEXT NOT NULL,                 -- what changed, in words
    config TEXT NOT NULL                   -- the whole configuration, JSON
);

CREATE TABLE route_targets (
    name TEXT PRIMARY KEY NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT NOT NULL
);

CREATE TABLE route_messages (
    seq BIGSERIAL PRIMARY KEY,             -- the order of sending within a target
    target TEXT NOT NULL,
    outbox_seq BIGINT NOT NULL,            -- the change that made it
    correlation_id TEXT NOT NULL,
    focus TEXT NOT NULL,                   -- Type/id/_history/n the message is about
    changes TEXT NOT NULL,                 -- JSON: every change of the write it carries
    patient TEXT,                          -- Patient/id: the order key
    status TEXT NOT NULL,                  -- pending, sent, failed (exception queue), skipped
    attempts INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    ack_code TEXT,
    last_error TEXT,
    kind TEXT,                             -- ADT^A01, ...: what it was rendered as
    message TEXT                           -- as last sent
);
CREATE INDEX route_messages_queue ON route_messages (target, status, seq);
