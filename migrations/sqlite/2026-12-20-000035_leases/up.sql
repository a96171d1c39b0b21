-- Leases: which process does a job that only one may do at a time when several share one
-- PostgreSQL (a routing target's sender, the event stream's publisher). The table held the
-- routing targets' leases alone; it is theirs and the stream's now.
ALTER TABLE route_targets RENAME TO leases;
