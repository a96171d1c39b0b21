-- The search index: one table per kind of search parameter, rows written in the same
-- transaction as the resource version they describe (replaced on update, removed on delete).
-- Each row is keyed by its owner and a row number (n): on SQLite the rows of one resource are
-- stored together (WITHOUT ROWID), so that writing and replacing them touches few pages; one
-- lookup index per table serves searches. _id and _lastUpdated are read from `resources`.

CREATE TABLE search_string (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    n INTEGER NOT NULL,                    -- row number within the resource
    param TEXT NOT NULL,
    norm TEXT NOT NULL,                    -- lower case, accents removed
    exact TEXT NOT NULL
    , PRIMARY KEY (resource_type, resource_id, n)
) WITHOUT ROWID;
CREATE INDEX search_string_lookup ON search_string (resource_type, param, norm);

CREATE TABLE search_token (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    n INTEGER NOT NULL,                    -- row number within the resource
    param TEXT NOT NULL,
    system TEXT,
    code TEXT,
    text TEXT                              -- normalised display or text, for :text
    , PRIMARY KEY (resource_type, resource_id, n)
) WITHOUT ROWID;
CREATE INDEX search_token_lookup ON search_token (resource_type, param, code, system);

CREATE TABLE search_reference (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    n INTEGER NOT NULL,                    -- row number within the resource
    param TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    url TEXT                               -- absolute URL or canonical
    , PRIMARY KEY (resource_type, resource_id, n)
) WITHOUT ROWID;
CREATE INDEX search_reference_lookup ON search_reference (resource_type, param, target_id, target_type);
CREATE INDEX search_reference_target ON search_reference (target_type, target_id);

CREATE TABLE search_date (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    n INTEGER NOT NULL,                    -- row number within the resource
    param TEXT NOT NULL,
    low BIGINT NOT NULL,                   -- microseconds since the epoch, inclusive
    high BIGINT NOT NULL
    , PRIMARY KEY (resource_type, resource_id, n)
) WITHOUT ROWID;
CREATE INDEX search_date_lookup ON search_date (resource_type, param, low);
CREATE INDEX search_date_high ON search_date (resource_type, param, high);

CREATE TABLE search_number (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    n INTEGER NOT NULL,                    -- row number within the resource
    param TEXT NOT NULL,
    value REAL NOT NULL
    , PRIMARY KEY (resource_type, resource_id, n)
) WITHOUT ROWID;
CREATE INDEX search_number_lookup ON search_number (resource_type, param, value);

CREATE TABLE search_quantity (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    n INTEGER NOT NULL,                    -- row number within the resource
    param TEXT NOT NULL,
    low REAL NOT NULL,
    high REAL NOT NULL,
    system TEXT,
    code TEXT,
    unit TEXT
    , PRIMARY KEY (resource_type, resource_id, n)
) WITHOUT ROWID;
CREATE INDEX search_quantity_lookup ON search_quantity (resource_type, param, low);

CREATE TABLE search_uri (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    n INTEGER NOT NULL,                    -- row number within the resource
    param TEXT NOT NULL,
    value TEXT NOT NULL
    , PRIMARY KEY (resource_type, resource_id, n)
) WITHOUT ROWID;
CREATE INDEX search_uri_lookup ON search_uri (resource_type, param, value);

-- A token paired with a second value from the same element (Observation.component).
CREATE TABLE search_composite (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    n INTEGER NOT NULL,                    -- row number within the resource
    param TEXT NOT NULL,
    system1 TEXT,
    code1 TEXT NOT NULL,
    system2 TEXT,                          -- second part: a token,
    code2 TEXT,
    low REAL,                       -- a quantity,
    high REAL,
    date_low BIGINT,                       -- a date,
    date_high BIGINT,
    text TEXT                              -- or a string (normalised)
    , PRIMARY KEY (resource_type, resource_id, n)
) WITHOUT ROWID;
CREATE INDEX search_composite_lookup ON search_composite (resource_type, param, code1);

-- _lastUpdated searches and sorts read the current version's time.
CREATE INDEX resources_by_time ON resources (resource_type, last_updated);
