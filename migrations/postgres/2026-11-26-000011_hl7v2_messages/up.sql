-- HL7v2 messages as received (the archive), one row per message key (sending application,
-- sending facility, control id, and a hash of the content but for MSH-7, since some senders
-- reuse control ids for different messages): its raw text, what became of it (applied, failed = in the
-- exception queue, rejected), the ACK code it got, and the correlation id that links it to the
-- resources, audit rows and outbox events it produced.
CREATE TABLE hl7v2_messages (
    id TEXT PRIMARY KEY NOT NULL,
    correlation_id TEXT NOT NULL,
    sending_application TEXT NOT NULL,
    sending_facility TEXT NOT NULL,
    control_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    message_type TEXT NOT NULL,
    trigger_event TEXT NOT NULL,
    version TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    processed_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    ack_code TEXT NOT NULL,
    error_location TEXT,
    error_code TEXT,
    error TEXT,
    attempts INTEGER NOT NULL,
    resources TEXT NOT NULL,               -- JSON array of 'Type/id/_history/version' written
    raw TEXT NOT NULL
);
-- a resend of the same message finds the first one (idempotency)
CREATE UNIQUE INDEX hl7v2_messages_key
    ON hl7v2_messages (sending_application, sending_facility, control_id, content_hash);
-- the exception queue, newest first
CREATE INDEX hl7v2_messages_status ON hl7v2_messages (status, received_at);
