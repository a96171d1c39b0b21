-- Identifiers are found through the search index (search_token, param identifier) now.
DROP TABLE resource_identifiers;
