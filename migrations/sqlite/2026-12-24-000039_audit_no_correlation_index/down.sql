CREATE INDEX audit_events_by_correlation ON audit_events (correlation_id);
