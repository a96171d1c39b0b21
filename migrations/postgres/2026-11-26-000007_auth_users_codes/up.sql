-- People who sign in at /auth/authorize: a password kept as an argon2 hash, and the FHIR
-- resource they are (`fhirUser`: Practitioner/..., Patient/..., RelatedPerson/...).
CREATE TABLE auth_users (
    username TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    fhir_user TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Authorization codes, by the SHA-256 of the code (the code itself is never stored): single
-- use, short-lived, bound to the client, the redirect URI and the PKCE challenge.
CREATE TABLE auth_codes (
    code_hash TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    username TEXT NOT NULL,
    fhir_user TEXT NOT NULL,
    scope TEXT NOT NULL,
    patient TEXT,
    encounter TEXT,
    expires_at BIGINT NOT NULL,            -- seconds since the epoch
    used BOOLEAN NOT NULL
);
