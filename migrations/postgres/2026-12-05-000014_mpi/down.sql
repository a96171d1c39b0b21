DROP TABLE mpi_keys;
