-- The audit trail in blocks (src/store/audit/): the accesses one flush writes (or one write
-- transaction makes) are one row, their entries a JSON array in `body`, sealed into the hash
-- chain as one link (its place and SHA-256 over the previous link's hash, its place and the
-- body). A row per access with five indexes cost about 11 µs of the server's CPU per audited
-- read, over issue 24's budget; a block costs its accesses a posting each (docs/performance.md).
CREATE TABLE audit_blocks (
    seq BIGSERIAL PRIMARY KEY,
    first_at BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    entries INTEGER NOT NULL,
    body TEXT NOT NULL,
    chain_pos BIGINT,
    hash TEXT
);
CREATE UNIQUE INDEX audit_blocks_chain ON audit_blocks (chain_pos);
CREATE INDEX audit_blocks_unsealed ON audit_blocks (seq) WHERE chain_pos IS NULL;
CREATE INDEX audit_blocks_by_time ON audit_blocks (last_at);
-- What finds a block: a 64-bit key (the first 8 bytes of SHA-256) of each patient, entity,
-- agent, type, subtype and outcome its entries name, once per block. A search reads the blocks
-- its terms point to and keeps the entries that match exactly (keys may collide).
CREATE TABLE audit_postings (
    term BIGINT NOT NULL,
    block BIGINT NOT NULL,
    PRIMARY KEY (term, block)
);
-- the rows kept until now become blocks (src/store/audit/legacy.rs), their old chain checked
INSERT INTO pending_backfills (name) VALUES ('audit_blocks');
