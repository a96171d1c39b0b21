DELETE FROM pending_backfills WHERE name = 'molecular_sequence_coordinates';
ALTER TABLE search_composite DROP COLUMN value3;
