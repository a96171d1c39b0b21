-- SMART clients registered with `emrsync client add`: how each authenticates (public, a shared
-- secret kept as an argon2 hash, or its public keys inline or at a URL), which scopes it may be
-- granted and where the authorization server may send its users back to.
CREATE TABLE auth_clients (
    client_id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,                    -- public | symmetric | asymmetric
    secret_hash TEXT,                      -- argon2 PHC string (symmetric)
    jwks TEXT,                             -- JWK Set JSON (asymmetric, inline)
    jwks_uri TEXT,                         -- or where to fetch it
    scope TEXT NOT NULL,                   -- the most this client may be granted
    redirect_uris TEXT NOT NULL,           -- JSON array, matched exactly
    created_at BIGINT NOT NULL
);

-- The `jti` of every client assertion accepted, kept until it expires, so that a replayed
-- assertion is refused.
CREATE TABLE auth_assertions (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,            -- seconds since the epoch
    PRIMARY KEY (client_id, jti)
);
