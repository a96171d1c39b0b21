-- Alerts (src/ops/alerts/): the rules as data, each version kept with who set it, and the
-- alerts raised, one open at most per rule and subject (the condition that fired: a feed, a
-- queue, a target, a client).
CREATE TABLE alert_rules (
    version BIGINT PRIMARY KEY NOT NULL,
    recorded_at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    config TEXT NOT NULL
);
CREATE TABLE alerts (
    id TEXT PRIMARY KEY NOT NULL,
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    raised_at BIGINT NOT NULL,
    resolved_at BIGINT,
    detail TEXT NOT NULL
);
CREATE UNIQUE INDEX alerts_open ON alerts (rule, subject) WHERE status = 'firing';
CREATE INDEX alerts_by_time ON alerts (raised_at);
