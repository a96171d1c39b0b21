-- Nothing to do: PostgreSQL writes each resource's words into `search_text` in its own
-- transaction at once (SQLite queues them, see migrations/sqlite of the same name); kept so
-- that both backends count the same migrations.
SELECT 1;
