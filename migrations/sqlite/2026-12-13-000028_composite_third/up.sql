-- The third part of a three-part composite search parameter (MolecularSequence's coordinates:
-- a chromosome or sequence id, a start and an end): the end, a number. The start is kept where
-- a two-part composite keeps its second number (low, high). src/fhir/search/index.rs.
ALTER TABLE search_composite ADD COLUMN value3 REAL;
INSERT INTO pending_backfills (name) VALUES ('molecular_sequence_coordinates');
