#!/usr/bin/env python3
"""Key facts of another converter's answers, for tests/api/hl7v2_corpus.rs to compare with.

Reads the Microsoft FHIR-Converter's expected outputs for the messages in
tests/corpus/hl7v2/microsoft-fhir-converter/ and writes, per message, the facts a user would check (identifiers, names, birth date,
gender of the Patient; status and class of the Encounter; code and status of orders,
medication requests and immunizations; times and status of appointments; the identity and
status of documents) to
tests/corpus/hl7v2/expected-facts.json. The expected files themselves (5 MB, mostly base64 of
the source in Provenance) stay out of the repository.

    git clone https://github.com/microsoft/FHIR-Converter /tmp/FHIR-Converter
    git -C /tmp/FHIR-Converter checkout 70fd328e05019142f616a660cf65c6034baaa3c9
    scripts/hl7v2-corpus-facts.py /tmp/FHIR-Converter

(the commit tests/corpus/hl7v2/README.md names; MIT, (c) Microsoft Corporation). The expected
outputs are there as
src/Microsoft.Health.Fhir.Liquid.Converter.FunctionalTests/TestData/Expected/Hl7v2/<template>/<name>-expected.json.
"""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent
if len(sys.argv) != 2:
    sys.exit(__doc__)
converter = pathlib.Path(sys.argv[1])
expected_dir = (
    converter / "src/Microsoft.Health.Fhir.Liquid.Converter.FunctionalTests/TestData/Expected/Hl7v2"
)
ours = root / "tests/corpus/hl7v2/microsoft-fhir-converter"
# each message of ours, with the converter's expected answer for it (under its root template)
expected = {
    f.name.removesuffix("-expected.json"): f for f in expected_dir.glob("*/*-expected.json")
}


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
for message in sorted(ours.glob("*.hl7")):
    f = expected.get(message.stem)
    if f is None:
        continue
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
    facts["microsoft-fhir-converter/" + message.name] = one

out = root / "tests/corpus/hl7v2/expected-facts.json"
out.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
print(f"{len(facts)} messages' facts written to {out.relative_to(root)}")
