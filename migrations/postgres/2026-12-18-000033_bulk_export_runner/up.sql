-- The process running an export (an id each server takes at start): only it records the
-- job's heartbeat and end, so that a process thought stopped (silent for a minute) whose job
-- another process took over cannot write over the new run when it wakes.
ALTER TABLE bulk_exports ADD COLUMN runner TEXT;
