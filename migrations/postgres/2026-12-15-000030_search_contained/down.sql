DELETE FROM pending_backfills WHERE name = 'search_contained';
DROP TABLE search_contained;
