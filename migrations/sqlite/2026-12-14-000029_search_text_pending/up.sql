-- The words of resources written in the open transaction, on their way to `search_text`
-- (src/store/search_text.rs): each write adds its rows here, and the transaction moves them all
-- into the FTS5 table with one statement just before it commits (`search_text::flush`), after
-- every writer's savepoint is released. Written inside a group-commit writer's savepoint, each
-- FTS5 statement flushed a segment of its own, and each of FTS5's page writes truncated the
-- savepoint's in-memory journal by walking it from its start: a tenth of a transaction Bundle's
-- time. The table is empty outside a transaction.
CREATE TABLE search_text_pending (
    id INTEGER PRIMARY KEY,
    narrative TEXT NOT NULL,
    content TEXT NOT NULL
);
