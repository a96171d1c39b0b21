DROP TABLE provider_stale;
DROP TABLE provider_reviews;
DROP TABLE provider_link_history;
DROP TABLE provider_links;
DROP TABLE provider_keys;
DROP TABLE provider_records;
