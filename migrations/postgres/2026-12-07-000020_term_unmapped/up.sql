-- Local codes that came in and that no normalisation map translated (terminology/normalise.rs):
-- the integration team's worklist of maps to write. One row per code, system, sending system
-- and element; counted, with when it was first and last met and an example (the resource
-- type, and the correlation id of the write that carried it).
CREATE TABLE term_unmapped (
    system TEXT NOT NULL,
    code TEXT NOT NULL,
    source TEXT NOT NULL,
    element TEXT NOT NULL,
    display TEXT,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    count BIGINT NOT NULL,
    example TEXT NOT NULL,
    PRIMARY KEY (system, code, source, element)
);
