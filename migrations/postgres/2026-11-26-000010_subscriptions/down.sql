DROP TABLE subscription_events;
DROP TABLE subscriptions;
DROP INDEX outbox_pending;
ALTER TABLE outbox DROP COLUMN dispatched_at;
