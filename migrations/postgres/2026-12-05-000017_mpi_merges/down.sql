DROP INDEX mpi_link_history_person;
DROP TABLE mpi_merges;
