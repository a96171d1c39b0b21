-- Bulk Data exports (`$export`, src/bulk/): one row per job, from kick-off until its files
-- expire. The grant it was asked under is kept (actor, scope, launch patient) because the job
-- reads after the token may have expired; `owner` is the client that alone may poll, download
-- and cancel. `status`: accepted, running, done, failed (with `error`), cancelled.
CREATE TABLE bulk_exports (
    id TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    actor TEXT NOT NULL,
    scope TEXT NOT NULL,
    patient TEXT,
    request TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    transaction_time BIGINT,
    finished_at BIGINT,
    -- a running job's process says it is alive every few seconds; a job whose process has
    -- been silent for a minute is run again by whichever process sees it
    heartbeat_at BIGINT,
    output TEXT,
    error TEXT
);
CREATE INDEX bulk_exports_status ON bulk_exports (status, created_at);
CREATE INDEX bulk_exports_owner ON bulk_exports (owner, status);
