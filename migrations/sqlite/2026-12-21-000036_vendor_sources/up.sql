-- Vendor sources (proprietary REST/JSON APIs, file drops): where each record type's reading
-- stands (the cursor after the last page applied, written in that page's transaction), and
-- the records that could not be mapped or were not valid, kept whole with the reason, for a
-- person to see, and to replay once the map is fixed.
CREATE TABLE vendor_cursors (
    source TEXT NOT NULL,
    record_type TEXT NOT NULL,
    cursor TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (source, record_type)
);
CREATE TABLE vendor_exceptions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    record_type TEXT NOT NULL,
    vendor_key TEXT,
    record TEXT NOT NULL,
    element TEXT NOT NULL,
    path TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE INDEX vendor_exceptions_open ON vendor_exceptions (source, status, seq);
