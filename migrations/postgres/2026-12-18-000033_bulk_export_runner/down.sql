ALTER TABLE bulk_exports DROP COLUMN runner;
