-- Access tokens revoked before their expiry (RFC 7009), by `jti`, kept until they would have
-- expired anyway.
CREATE TABLE auth_revoked (
    jti TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL             -- seconds since the epoch
);
