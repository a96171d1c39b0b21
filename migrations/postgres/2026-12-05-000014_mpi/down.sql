DROP TABLE mpi_reviews;
DROP TABLE mpi_link_history;
DROP TABLE mpi_links;
DROP TABLE mpi_people;
DROP TABLE mpi_keys;
