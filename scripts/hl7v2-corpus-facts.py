#!/usr/bin/env python3
"""Key facts of another converter's answers, for tests/api/hl7v2_corpus.rs to compare with.

Reads the Microsoft FHIR-Converter expected outputs (`*.expected.fhir.json`) of the shared HL7v2
corpus and writes, per message, the facts a user would check (identifiers, names, birth date,
gender of the Patient; status and class of the Encounter; code and status of orders,
medication requests and immunizations; times and status of appointments; the identity and
status of documents) to
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


def codes(cc):
    return sorted({c["code"] for c in (cc or {}).get("coding", []) if "code" in c})


def service_request_facts(r):
    return {
        "status": r.get("status"),
        "codes": codes(r.get("code")),
        "identifiers": sorted({i["value"] for i in r.get("identifier", []) if "value" in i}),
    }


def immunization_facts(r):
    return {
        "status": r.get("status"),
        "codes": codes(r.get("vaccineCode")),
        "date": (r.get("occurrenceDateTime") or "")[:10] or None,
        "lot": r.get("lotNumber"),
    }


def appointment_facts(r):
    return {
        "status": r.get("status"),
        "start": r.get("start"),
        "end": r.get("end"),
        "identifiers": sorted({i["value"] for i in r.get("identifier", []) if "value" in i}),
    }


def document_facts(r):
    return {
        "status": r.get("status"),
        "docStatus": r.get("docStatus"),
        "number": (r.get("masterIdentifier") or {}).get("value"),
        "types": codes(r.get("type")),
    }


def medication_request_facts(r, medications):
    ref = (r.get("medicationReference") or {}).get("reference", "")
    med = medications.get(ref.split("/")[-1], {})
    return {"status": r.get("status"), "codes": codes(r.get("medicationCodeableConcept") or med.get("code"))}


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
    medications = {r["id"]: r for r in resources if r["resourceType"] == "Medication"}
    for key, rtype, extract in [
        ("service_requests", "ServiceRequest", service_request_facts),
        ("immunizations", "Immunization", immunization_facts),
        ("appointments", "Appointment", appointment_facts),
        ("documents", "DocumentReference", document_facts),
        ("medication_requests", "MedicationRequest", lambda r: medication_request_facts(r, medications)),
    ]:
        found = [extract(r) for r in resources if r["resourceType"] == rtype]
        if found:
            one[key] = found
    facts["microsoft-fhir-converter/" + f.name.replace(".expected.fhir.json", ".hl7")] = one

out = root / "tests/corpus/hl7v2/expected-facts.json"
out.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
print(f"{len(facts)} messages' facts written to {out.relative_to(root)}")
