DROP TABLE auth_refresh;
