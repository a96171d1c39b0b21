#!/usr/bin/env python3
"""Key facts of another converter's answers, for tests/api/hl7v2_corpus.rs to compare with.

Reads the Microsoft FHIR-Converter expected outputs (`*.expected.fhir.json`) of the shared HL7v2
corpus and writes, per message, the facts a user would check (identifiers, names, birth date,
gender of the Patient; status and class of the Encounter) to
tests/corpus/hl7v2/expected-facts.json. The expected files themselves (5 MB, mostly base64 of
the source in Provenance) stay out of the repository.

    scripts/hl7v2-corpus-facts.py [../shared/corpus/hl7v2]
"""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent
corpus = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else root / "../shared/corpus/hl7v2")


def patient_facts(p):
    return {
        "identifiers": sorted({i["value"] for i in p.get("identifier", []) if "value" in i}),
        "families": sorted({n["family"] for n in p.get("name", []) if "family" in n}),
        "birthDate": p.get("birthDate"),
        "gender": p.get("gender"),
    }


def encounter_facts(e):
    return {
        "status": e.get("status"),
        "class": e.get("class", {}).get("code"),
        "visit": sorted({i["value"] for i in e.get("identifier", []) if "value" in i}),
    }


facts = {}
for f in sorted((corpus / "microsoft-fhir-converter").glob("*.expected.fhir.json")):
    bundle = json.loads(f.read_text(encoding="utf-8-sig"))
    resources = [e["resource"] for e in bundle.get("entry", [])]
    one = {}
    patients = [patient_facts(r) for r in resources if r["resourceType"] == "Patient"]
    encounters = [encounter_facts(r) for r in resources if r["resourceType"] == "Encounter"]
    if patients:
        one["patients"] = patients
    if encounters:
        one["encounters"] = encounters
    facts["microsoft-fhir-converter/" + f.name.replace(".expected.fhir.json", ".hl7")] = one

out = root / "tests/corpus/hl7v2/expected-facts.json"
out.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
print(f"{len(facts)} messages' facts written to {out.relative_to(root)}")
