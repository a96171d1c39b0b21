DROP TABLE auth_revoked;
