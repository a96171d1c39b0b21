DROP TABLE term_packages;
DROP TABLE term_parents;
DROP TABLE term_concepts;
DROP TABLE term_resources;
