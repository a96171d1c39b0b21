-- Files dropped in a vendor source's folder: one row per file content (its SHA-256), so that
-- a file is processed once (the same content dropped again is recognised and not applied
-- twice), a file half read when the process stopped is resumed where its last committed
-- chunk left it (`done_count`, written in that chunk's transaction), and its report (counts,
-- every record or message not applied and why) is kept for the report file and the CLI.
CREATE TABLE dropped_files (
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    format TEXT NOT NULL,
    status TEXT NOT NULL,
    done_count BIGINT NOT NULL,
    report TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (source, sha256)
);
CREATE INDEX dropped_files_recent ON dropped_files (source, started_at);
