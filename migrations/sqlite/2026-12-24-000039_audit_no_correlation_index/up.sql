-- The trail's correlation-id index goes: no query of audit_events uses it (a correlation id is
-- traced through the transaction log's tables, each with its own index), and its random
-- 36-character keys were half of what inserting an audit row cost (about 9 of 18 µs a row on
-- SQLite: scripts/audit-index-cost.py, docs/performance.md), paid on every audited read.
DROP INDEX audit_events_by_correlation;
