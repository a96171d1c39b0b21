DROP TABLE auth_signing_keys;
