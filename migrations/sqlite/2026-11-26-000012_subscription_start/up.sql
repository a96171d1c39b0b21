-- A subscription hears of changes made after it was created: the outbox position it starts
-- after (changes already committed but not yet dispatched when it was created are not its).
ALTER TABLE subscriptions ADD COLUMN starts_after BIGINT NOT NULL DEFAULT 0;
