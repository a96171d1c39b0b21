DROP TABLE pending_backfills;
DROP TABLE search_text;
