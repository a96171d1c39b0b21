ALTER TABLE subscriptions DROP COLUMN starts_after;
