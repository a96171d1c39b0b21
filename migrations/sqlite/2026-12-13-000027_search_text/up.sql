-- Full-text search (`_text`, `_content`; src/fhir/search/text.rs, src/store/search_text.rs).
-- The words are kept once, in FTS5's own index: the table has no content of its own
-- (`content=''`), yet rows can be deleted (`contentless_delete`, SQLite 3.43+). Each current
-- resource with text has one row, whose rowid is its key in `search_text_rows`.
CREATE TABLE search_text_rows (
    id INTEGER PRIMARY KEY,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    UNIQUE (resource_type, resource_id)
);
-- the words arrive lower case, without accents, split at what is not a letter or a digit:
-- the tokenizer only splits them again at the spaces
CREATE VIRTUAL TABLE search_text USING fts5(
    narrative, content,
    content = '', contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 0'
);

-- Work a migration leaves for the server to do in Rust once it has run (src/store/backfill.rs):
-- each row is done, then deleted, so that a crash halfway leaves it to be done again.
CREATE TABLE pending_backfills (name TEXT PRIMARY KEY);
INSERT INTO pending_backfills (name) VALUES ('search_text'), ('subscription_patient');
