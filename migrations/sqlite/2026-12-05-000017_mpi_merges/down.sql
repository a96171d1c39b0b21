DROP TABLE mpi_merges;
