DROP INDEX audit_blocks_unposted;
ALTER TABLE audit_blocks DROP COLUMN posted;
