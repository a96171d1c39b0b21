-- Refresh tokens, by the SHA-256 of the token (never stored in clear). Each use rotates it: the
-- old one is marked used and a new one of the same family issued. A used token presented again
-- means it leaked, and the whole family is revoked (OAuth 2.0 Security BCP, section 4.14).
CREATE TABLE auth_refresh (
    token_hash TEXT PRIMARY KEY NOT NULL,
    family TEXT NOT NULL,
    client_id TEXT NOT NULL,
    username TEXT NOT NULL,
    fhir_user TEXT NOT NULL,
    scope TEXT NOT NULL,
    patient TEXT,
    expires_at BIGINT NOT NULL,            -- seconds since the epoch
    used BOOLEAN NOT NULL,
    revoked BOOLEAN NOT NULL
);
CREATE INDEX auth_refresh_family ON auth_refresh (family);
