"""The calls of the fhirpy package (beda.software's FHIR client) that issue 28 names, against a
running emrsync: patch() (a partial resource sent as application/json: a JSON Merge Patch),
get_or_create() (a conditional create by query string) and is_valid() ($validate). Run by
tests/api/clients_more.rs as: python fhirpy_calls.py BASE_URL TOKEN. Prints one JSON object of
what the client saw; the Rust test asserts on it."""
import json
import sys

from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome

base, token = sys.argv[1], sys.argv[2]
client = SyncFHIRClient(base, authorization=f"Bearer {token}")
seen = {}

patient = client.resource(
    "Patient",
    identifier=[{"system": "http://hospital.example.org/mrn", "value": "FP1"}],
    name=[{"family": "Okafor", "given": ["Ada"]}],
    gender="female",
    birthDate="1980-02-03",
)
patient.save()
seen["created_id"] = patient.id

# client.patch: only the named elements, birthDate null removes it
patched = client.patch("Patient", patient.id, gender="other", birthDate=None)
seen["patched"] = {
    "gender": patched.get("gender"),
    "birthDate": patched.get("birthDate"),
    "name": patched.get("name"),
    "versionId": patched["meta"]["versionId"],
}
# a resource's own patch(): the named fields, the rest left alone
patient.patch(active=True)
seen["resource_patch"] = client.reference("Patient", patient.id).to_resource().serialize()

# get_or_create: POST Patient?identifier=... twice
wanted = client.resource(
    "Patient",
    identifier=[{"system": "http://hospital.example.org/mrn", "value": "FP2"}],
    name=[{"family": "Mensah"}],
)
search = client.resources("Patient").search(identifier="http://hospital.example.org/mrn|FP2")
first, created_first = search.get_or_create(wanted)
second, created_second = search.get_or_create(wanted)
seen["get_or_create"] = {
    "first_created": created_first,
    "second_created": created_second,
    "same": first.id == second.id,
    "count": search.count(),
}

# is_valid: $validate of a good and a bad resource, nothing stored
good = client.resource("Patient", name=[{"family": "Valid"}], gender="male")
bad = client.resource("Patient", name=[{"family": "Invalid"}], gender="banana")
seen["valid"] = good.is_valid()
seen["invalid"] = bad.is_valid()
try:
    bad.is_valid(raise_exception=True)
    seen["invalid_raised"] = None
except OperationOutcome as e:
    seen["invalid_raised"] = str(e)
seen["stored_after_validate"] = client.resources("Patient").search(family="Invalid").count()

print(json.dumps(seen))
