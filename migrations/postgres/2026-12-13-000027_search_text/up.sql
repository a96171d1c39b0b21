-- Full-text search (`_text`, `_content`; src/fhir/search/text.rs, src/store/search_text.rs).
-- One row per current resource with text: its narrative's words, and all of its words (the
-- narrative's too), each a tsvector of the 'simple' configuration (no stemming, no stop words:
-- the words arrive lower case, without accents, split as on SQLite), each with a GIN index.
CREATE TABLE search_text (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    narrative TSVECTOR NOT NULL,
    content TSVECTOR NOT NULL,
    PRIMARY KEY (resource_type, resource_id)
);
CREATE INDEX search_text_narrative ON search_text USING GIN (narrative);
CREATE INDEX search_text_content ON search_text USING GIN (content);

-- Work a migration leaves for the server to do in Rust once it has run (src/store/backfill.rs):
-- each row is done, then deleted, so that a crash halfway leaves it to be done again.
CREATE TABLE pending_backfills (name TEXT PRIMARY KEY);
INSERT INTO pending_backfills (name) VALUES ('search_text'), ('subscription_patient');
