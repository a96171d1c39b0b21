-- An AuditEvent's agent `Practitioner/1 via client X` is found by `agent=Practitioner/1` and
-- by `agent=client X` too: the blocks kept until now get those postings from their bodies
-- (src/store/audit/postings.rs, `post_again`).
INSERT INTO pending_backfills (name) VALUES ('audit_agent_parts');
