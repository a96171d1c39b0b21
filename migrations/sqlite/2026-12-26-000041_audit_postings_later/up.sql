-- A flush's blocks are stored at once but posted later (src/store/audit/postings.rs): the
-- postings of a run of blocks go into their index together, sorted, so that a hot patient's
-- index page is written once a run rather than once a flush. Until then `posted` is false and
-- searches read such blocks whole (the partial index finds them). A write's block is posted in
-- its own transaction, as before.
ALTER TABLE audit_blocks ADD COLUMN posted BOOLEAN NOT NULL DEFAULT 1;
CREATE INDEX audit_blocks_unposted ON audit_blocks (seq) WHERE NOT posted;
