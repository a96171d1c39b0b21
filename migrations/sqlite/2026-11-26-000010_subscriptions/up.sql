-- Topic-based Subscriptions: the outbox rows not yet matched against them, each subscription's
-- runtime state (with the authorization it was created under and its write-only headers), and
-- its durable, numbered event queue.
ALTER TABLE outbox ADD COLUMN dispatched_at BIGINT;
-- changes made before there were subscriptions have no one to notify
UPDATE outbox SET dispatched_at = created_at;
CREATE INDEX outbox_pending ON outbox (seq) WHERE dispatched_at IS NULL;

CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY NOT NULL,          -- the Subscription resource's id
    topic TEXT NOT NULL,                   -- a topic canonical, or 'Type?query' (R4 classic)
    filters TEXT NOT NULL,                 -- JSON array of 'Type?param=value' filters
    status TEXT NOT NULL,                  -- requested, active, error, off
    channel TEXT NOT NULL,                 -- rest-hook or websocket
    endpoint TEXT,
    headers TEXT NOT NULL,                 -- JSON array of 'Name: value'; never rendered
    payload TEXT NOT NULL,                 -- empty, id-only or full-resource
    content_type TEXT NOT NULL,
    heartbeat_secs BIGINT,
    timeout_secs BIGINT NOT NULL,
    max_count BIGINT NOT NULL,
    scope TEXT NOT NULL,                   -- the subscriber's authorization
    patient TEXT,
    actor TEXT NOT NULL,
    events_since_start BIGINT NOT NULL,
    delivered_through BIGINT NOT NULL,
    handshake_done BOOLEAN NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    last_sent_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    lease_owner TEXT
);

CREATE TABLE subscription_events (
    subscription_id TEXT NOT NULL,
    event_number BIGINT NOT NULL,
    outbox_seq BIGINT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    action TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    correlation_id TEXT NOT NULL,
    PRIMARY KEY (subscription_id, event_number)
);
