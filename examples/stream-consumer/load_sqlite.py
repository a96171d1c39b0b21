"""Load emrsync's event stream into an analytics table: a small consumer of the contract in
docs/event-stream.md, with the NATS project's own Python client (PyPI nats-py) and SQLite from
the standard library.

    python load_sqlite.py --nats nats://127.0.0.1:4222 --db analytics.db          # follow
    python load_sqlite.py --nats nats://127.0.0.1:4222 --db analytics.db --once   # drain, stop

A durable JetStream consumer (`--consumer`, default `analytics-sqlite`) remembers where it
stopped: run it again and it goes on from there. Each batch of events is written in one SQLite
transaction and acknowledged only after the commit, so a crash replays the batch, and the
inserts ignore an event already loaded (the envelope's id is the key): each change is in the
table once.

Two tables:
  events   one row per change: what, which version, whose, when, from which system
  latest   one row per resource: its newest version and whether it is deleted
Then ask SQL what the data team asks, e.g. results per patient per day:
  SELECT patient, date(time), count(*) FROM events
   WHERE resource_type = 'Observation' AND action = 'create' GROUP BY 1, 2;
"""

import argparse
import asyncio
import json
import sqlite3
import ssl
import sys

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,          -- the envelope's id: emrsync's outbox position
    stream_seq INTEGER NOT NULL,     -- JetStream's sequence
    time TEXT NOT NULL,              -- when the change was committed
    action TEXT NOT NULL,            -- create, update, delete
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    version_id INTEGER NOT NULL,
    patient TEXT,                    -- Patient/<id>, absent for a resource about no one
    source_system TEXT,
    correlation_id TEXT
);
CREATE INDEX IF NOT EXISTS events_patient ON events (patient, time);
CREATE TABLE IF NOT EXISTS latest (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    version_id INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    patient TEXT,
    updated TEXT NOT NULL,
    PRIMARY KEY (resource_type, resource_id)
);
"""


def load(db, batch):
    """Write one batch of (stream sequence, envelope) in one transaction."""
    with db:
        for stream_seq, e in batch:
            db.execute(
                "INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    int(e["id"]), stream_seq, e["time"], e["action"], e["resourceType"],
                    e["resourceId"], e["versionId"], e.get("patient"), e.get("sourceSystem"),
                    e.get("correlationId"),
                ),
            )
            # the newest version wins, whatever order a replay brings them in
            db.execute(
                """INSERT INTO latest VALUES (?,?,?,?,?,?)
                   ON CONFLICT (resource_type, resource_id) DO UPDATE SET
                     version_id = excluded.version_id, deleted = excluded.deleted,
                     patient = coalesce(excluded.patient, latest.patient),
                     updated = excluded.updated
                   WHERE excluded.version_id > latest.version_id""",
                (
                    e["resourceType"], e["resourceId"], e["versionId"],
                    1 if e["action"] == "delete" else 0, e.get("patient"), e["time"],
                ),
            )


async def run(args):
    options = {"name": "emrsync-analytics-example"}
    if args.token_file:
        options["token"] = open(args.token_file).read().strip()
    if args.credentials_file:
        options["user_credentials"] = args.credentials_file
    if args.ca_file:
        context = ssl.create_default_context(cafile=args.ca_file)
        options["tls"] = context
    nc = await nats.connect(args.nats, **options)
    js = nc.jetstream()
    config = ConsumerConfig(
        durable_name=args.consumer,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        filter_subject=args.subject,
        max_ack_pending=10_000,
    )
    try:
        await js.consumer_info(args.stream, args.consumer)
    except NotFoundError:
        await js.add_consumer(args.stream, config)
    sub = await js.pull_subscribe_bind(args.consumer, args.stream)
    db = sqlite3.connect(args.db)
    db.executescript(SCHEMA)
    loaded = 0
    while True:
        try:
            messages = await sub.fetch(args.batch, timeout=args.wait)
        # nats-py says "nothing came" as its own TimeoutError, or (from a batch fetch whose
        # wait ran out before the first message) as asyncio's
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            if args.once:
                break
            continue
        batch = [(m.metadata.sequence.stream, json.loads(m.data)) for m in messages]
        load(db, batch)
        # acknowledged after the commit: a crash before this replays the batch, harmlessly
        for m in messages:
            await m.ack()
        await nc.flush()
        loaded += len(batch)
    await nc.close()
    (total,) = db.execute("SELECT count(*) FROM events").fetchone()
    print(json.dumps({"loaded": loaded, "events": total}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nats", default="nats://127.0.0.1:4222")
    p.add_argument("--stream", default="EMRSYNC")
    p.add_argument("--subject", default="emrsync.>", help="e.g. emrsync.Observation.*")
    p.add_argument("--consumer", default="analytics-sqlite", help="the durable consumer's name")
    p.add_argument("--db", default="analytics.db")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--wait", type=float, default=2.0, help="seconds a fetch waits for events")
    p.add_argument("--once", action="store_true", help="stop when no event came for --wait")
    p.add_argument("--token-file")
    p.add_argument("--credentials-file")
    p.add_argument("--ca-file")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
