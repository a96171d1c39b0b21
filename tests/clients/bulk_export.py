"""A payer's Bulk Data client, written from the IG alone: a Backend Services token (PyJWT signs
the client assertion), then a system, a Patient and a Group `$export`, each kicked off, polled
as `Retry-After` asks (capped, to keep the test short) and downloaded; every line of every file is
validated as FHIR R4 by fhir.resources. Prints one JSON line of what it got, which
tests/api/bulk_export.rs compares with what searches find.

Usage: bulk_export.py FHIR_BASE CLIENT_ID KID PRIVATE_KEY_PEM GROUP_ID
"""
import json
import pathlib
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import jwt
from fhir.resources import construct_fhir_element
from pydantic import ValidationError

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts"))
from validate_captured import tolerated  # noqa: E402  the suite's list of fhir.resources' own quirks


def request(url, token=None, method="GET", headers=None, form=None):
    data = urllib.parse.urlencode(form).encode() if form else None
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def token(fhir_base, client_id, kid, key_path):
    _, _, body = request(f"{fhir_base}/.well-known/smart-configuration")
    token_url = json.loads(body)["token_endpoint"]
    now = int(time.time())
    assertion = jwt.encode(
        {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240,
         "jti": str(uuid.uuid4())},
        pathlib.Path(key_path).read_text(),
        algorithm="ES384",
        headers={"kid": kid},
    )
    status, _, body = request(token_url, method="POST", form={
        "grant_type": "client_credentials",
        "scope": "system/*.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    })
    assert status == 200, body
    return json.loads(body)["access_token"]


def export(fhir_base, tok, level, invalid):
    status, headers, body = request(
        f"{fhir_base}/{level}$export", tok,
        headers={"Accept": "application/fhir+json", "Prefer": "respond-async"})
    assert status == 202, (level, status, body)
    status_url = headers["Content-Location"]
    while True:
        status, headers, body = request(status_url, tok)
        if status == 200:
            break
        assert status == 202, (status, body)
        assert "X-Progress" in headers
        time.sleep(min(float(headers.get("Retry-After", "1")), 0.2))
    manifest = json.loads(body)
    assert manifest["requiresAccessToken"] is True
    got = {}
    for out in manifest["output"]:
        status, headers, body = request(out["url"], tok)
        assert status == 200, (out, status)
        lines = body.decode().splitlines()
        assert len(lines) == out["count"], out
        for line in lines:
            resource = json.loads(line)
            try:
                construct_fhir_element(resource["resourceType"], resource)
            except ValidationError as e:
                real = [err for err in e.errors() if tolerated(err, resource) is None]
                if real:
                    invalid.append(f"{resource['resourceType']}/{resource.get('id')}: {real[:2]}")
            got.setdefault(resource["resourceType"], []).append(resource["id"])
    # the files may be fetched once more, and a DELETE ends the job
    assert request(status_url, tok, method="DELETE")[0] == 202
    assert request(status_url, tok)[0] == 404
    return {t: sorted(ids) for t, ids in got.items()}


def main():
    fhir_base, client_id, kid, key_path, group = sys.argv[1:6]
    tok = token(fhir_base, client_id, kid, key_path)
    invalid = []
    out = {
        "system": export(fhir_base, tok, "", invalid),
        "patient": export(fhir_base, tok, "Patient/", invalid),
        "group": export(fhir_base, tok, f"Group/{group}/", invalid),
        "invalid": invalid,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
