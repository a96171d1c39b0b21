DROP INDEX outbox_unpublished;
ALTER TABLE outbox DROP COLUMN published_at;
