DROP TABLE term_unmapped;
