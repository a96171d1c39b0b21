-- The transaction log and the dashboard (docs/operations.md).
-- An HL7v2 message's patient, as its sender named it (PID-3's MRN, kept even when the message
-- failed) and as it was written (the Patient id), so that the log is searched by either.
ALTER TABLE hl7v2_messages ADD COLUMN mrn TEXT;
ALTER TABLE hl7v2_messages ADD COLUMN patient TEXT;
-- When its first ACK was made (processed_at moves when it is replayed): the feed's latency.
ALTER TABLE hl7v2_messages ADD COLUMN acked_at BIGINT;
CREATE INDEX hl7v2_messages_by_time ON hl7v2_messages (received_at);
CREATE INDEX hl7v2_messages_by_control_id ON hl7v2_messages (control_id);
CREATE INDEX hl7v2_messages_by_correlation ON hl7v2_messages (correlation_id);
CREATE INDEX hl7v2_messages_by_mrn ON hl7v2_messages (mrn, received_at);
CREATE INDEX hl7v2_messages_by_patient ON hl7v2_messages (patient, received_at);
CREATE INDEX route_messages_by_time ON route_messages (created_at);
CREATE INDEX route_messages_by_correlation ON route_messages (correlation_id);
CREATE INDEX route_messages_by_patient ON route_messages (patient, created_at);
CREATE INDEX subscription_events_by_correlation ON subscription_events (correlation_id);
-- Roles of a person who signs in: `admin` may use the dashboard.
ALTER TABLE auth_users ADD COLUMN roles TEXT NOT NULL DEFAULT '';
-- Dashboard sessions: the cookie's token is kept only as its hash.
CREATE TABLE admin_sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX admin_sessions_by_expiry ON admin_sessions (expires_at);
