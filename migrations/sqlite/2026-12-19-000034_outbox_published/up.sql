-- The event stream (src/stream/): each change is published to NATS JetStream, and
-- `published_at` marks those the broker acknowledged. Changes from before the column existed
-- count as published: a stream turned on starts with the changes that follow.
ALTER TABLE outbox ADD COLUMN published_at BIGINT;
UPDATE outbox SET published_at = created_at;
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
