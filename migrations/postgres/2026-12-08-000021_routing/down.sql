DROP TABLE route_messages;
DROP TABLE route_targets;
DROP TABLE route_configs;
DROP INDEX outbox_unrouted;
ALTER TABLE outbox DROP COLUMN routed_at;
ALTER TABLE outbox DROP COLUMN origin;
