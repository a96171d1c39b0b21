ALTER TABLE search_composite DROP COLUMN value3;
