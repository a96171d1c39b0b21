DROP TABLE auth_codes;
DROP TABLE auth_users;
