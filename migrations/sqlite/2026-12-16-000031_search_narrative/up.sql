-- Nothing to do: FTS5 reads a column's words alone already (PostgreSQL moves the narrative's
-- words into a table of their own, see migrations/postgres of the same name); kept so that
-- both backends count the same migrations.
SELECT 1;
