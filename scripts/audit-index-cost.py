#!/usr/bin/env python3
"""What one audit row costs SQLite, by index (docs/performance.md, issue 24).

Inserts rows shaped as `audit_events` (migrations/sqlite/*audit*) in batches, as the audit
flusher does, into a fresh WAL database with the server's 16 MiB page cache, once per set of
indexes, and prints the microseconds of INSERT a row. Run: python3 scripts/audit-index-cost.py
"""
import hashlib
import os
import random
import sqlite3
import tempfile
import time
import uuid

TABLE = """CREATE TABLE audit_events (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, resource_type TEXT,
    resource_id TEXT, version_id BIGINT, outcome TEXT NOT NULL, correlation_id TEXT NOT NULL,
    detail TEXT, kind TEXT NOT NULL DEFAULT 'rest', patient TEXT, address TEXT, query TEXT,
    chain_pos BIGINT, hash TEXT, patient_key BIGINT, entity_key BIGINT)"""
INDEXES = {
    "time": "CREATE INDEX a1 ON audit_events (recorded_at)",
    "chain": "CREATE UNIQUE INDEX a5 ON audit_events (chain_pos)",
    "unsealed": "CREATE INDEX a6 ON audit_events (seq) WHERE chain_pos IS NULL",
    "agent": "CREATE INDEX a3 ON audit_events (actor, recorded_at)",
    "entity": "CREATE INDEX a4 ON audit_events (resource_type, resource_id)",
    "patient": "CREATE INDEX a2 ON audit_events (patient, recorded_at)",
    # what migrations 000025-26 put in place of the two text ones: 64-bit keys
    "patient key": "CREATE INDEX a7 ON audit_events (patient_key)",
    "entity key": "CREATE INDEX a8 ON audit_events (entity_key) WHERE entity_key IS NOT NULL",
    # in the foundation migration; no query of the trail uses it (dropped by 000039)
    "correlation": "CREATE INDEX a9 ON audit_events (correlation_id)",
}
INSERT = """INSERT INTO audit_events (recorded_at, actor, action, resource_type, resource_id,
    version_id, outcome, correlation_id, detail, kind, patient, address, query, chain_pos, hash,
    patient_key) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"""


def cost(indexes, rows=150_000, batch=2_600, patients=20_000):
    with tempfile.TemporaryDirectory() as d:
        c = sqlite3.connect(os.path.join(d, "a.db"), isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA cache_size=-16384")
        c.execute(TABLE)
        for name in indexes:
            c.execute(INDEXES[name])
        t, h, spent = int(time.time() * 1e6), "", 0.0
        for b in range(rows // batch):
            batch_rows = []
            for k in range(batch):
                p = uuid.UUID(int=random.randrange(patients) * 7919 + 1)
                t += 50
                h = hashlib.sha256(f"{h}{t}".encode()).hexdigest()
                batch_rows.append((t, "client bench", "read", "Patient", str(p), 1, "success",
                                   str(uuid.uuid4()), None, "rest", f"Patient/{p}",
                                   "127.0.0.1", None, b * batch + k + 1, h,
                                   random.getrandbits(63)))
            start = time.time()
            c.execute("BEGIN")
            c.executemany(INSERT, batch_rows)
            c.execute("COMMIT")
            spent += time.time() - start
        c.close()
        return spent / ((rows // batch) * batch) * 1e6


if __name__ == "__main__":
    in_order = ["time", "chain", "unsealed"]
    kept = in_order + ["agent", "patient key", "entity key"]
    for label, names in [
        ("none", []),
        ("time, chain, unsealed", in_order),
        ("+ agent", in_order + ["agent"]),
        ("+ entity", in_order + ["entity"]),
        ("+ patient", in_order + ["patient"]),
        ("the six of 000022", in_order + ["agent", "entity", "patient"]),
        ("+ correlation", in_order + ["correlation"]),
        ("keys (000026), no correlation", kept),
        ("keys + correlation (000038)", kept + ["correlation"]),
    ]:
        print(f"{label:32} {cost(names):6.1f} µs/row")
