DROP TABLE dropped_files;
