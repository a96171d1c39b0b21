-- Filed again at start-up with whatever keys that version files.
DELETE FROM mpi_keys;
DELETE FROM mpi_people;
DROP TABLE mpi_stale;
