DROP TABLE pending_backfills;
DROP TABLE search_text;
DROP TABLE search_text_rows;
