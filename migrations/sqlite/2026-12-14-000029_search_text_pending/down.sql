DROP TABLE search_text_pending;
