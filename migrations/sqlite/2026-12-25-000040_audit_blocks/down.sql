DELETE FROM pending_backfills WHERE name = 'audit_blocks';
DROP TABLE audit_postings;
DROP TABLE audit_blocks;
