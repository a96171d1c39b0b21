-- The keys this server signs its access tokens with (ES256, PKCS#8 DER, base64). Kept in the
-- database, not a file, so that `emrsync token` and every process on one PostgreSQL sign and
-- verify with the same keys. The newest key that is not retired signs; every key that is not
-- retired verifies (rotation: add a key, retire the old one once its tokens have expired).
CREATE TABLE auth_signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    alg TEXT NOT NULL,
    private_pkcs8 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
