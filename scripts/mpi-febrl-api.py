#!/usr/bin/env python3
"""FEBRL through the FHIR API: load Patients (ndjson from scripts/febrl-to-fhir.py) into a
running server in transactions of 100, each file as one source; print records per second
written, and linked (the linker follows the writes); then read each Patient's person
(GET /admin/mpi/patients/{id}) and score the links the server made, pair by pair, against the
truth the matcher never saw.

usage: mpi-febrl-api.py http://127.0.0.1:8080/fhir TOKEN a.ndjson [b.ndjson ...]
"""
import itertools
import json
import sys
import time
import urllib.request

TRUTH = "urn:emrsync:bench:entity"


def call(method, url, token, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/fhir+json")
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def main():
    base, token, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    root = base.rsplit("/fhir", 1)[0]
    truth = {}
    loaded = 0
    started = time.time()
    for path in files:
        rows = [json.loads(line) for line in open(path) if line.strip()]
        for chunk in range(0, len(rows), 100):
            batch = rows[chunk:chunk + 100]
            entries = []
            for p in batch:
                entity = next(i["value"] for i in p["identifier"] if i["system"] == TRUTH)
                p["identifier"] = [i for i in p["identifier"] if i["system"] != TRUTH]
                p["_entity"] = entity
                entries.append({"resource": {k: v for k, v in p.items() if k != "_entity"},
                                "request": {"method": "POST", "url": "Patient"}})
            answer = call("POST", base, token, {"resourceType": "Bundle", "type": "transaction", "entry": entries})
            for p, e in zip(batch, answer["entry"]):
                truth[e["response"]["location"].split("/")[1]] = p["_entity"]
            loaded += len(batch)
    elapsed = time.time() - started
    print(f"{loaded} Patients written in {elapsed:.1f} s: {loaded / elapsed:.0f} records/s, filed in the index on write")
    # the linker links them right after their writes: wait until it has caught up
    while call("GET", f"{root}/admin/mpi", token)["pending"] > 0:
        time.sleep(0.05)
    elapsed = time.time() - started
    print(f"{loaded} Patients linked {elapsed:.1f} s after the first write: {loaded / elapsed:.0f} records/s, matched and linked")
    person = {}
    for pid in truth:
        person[pid] = call("GET", f"{root}/admin/mpi/patients/{pid}", token)["person"]
    by_entity, by_person = {}, {}
    for pid, e in truth.items():
        by_entity.setdefault(e, []).append(pid)
        by_person.setdefault(person[pid], []).append(pid)
    true_pairs = {tuple(sorted(p)) for g in by_entity.values() for p in itertools.combinations(g, 2)}
    linked = {tuple(sorted(p)) for g in by_person.values() for p in itertools.combinations(g, 2)}
    hit = len(true_pairs & linked)
    precision = hit / max(len(linked), 1)
    recall = hit / max(len(true_pairs), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    print(f"linked pairs {len(linked)}, true pairs {len(true_pairs)}: "
          f"precision {precision:.4f} recall {recall:.4f} F1 {f1:.4f}")


main()
