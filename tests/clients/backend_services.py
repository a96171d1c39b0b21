"""A SMART Backend Services client written with PyJWT, as a payer's integration would be.

It signs a client assertion (ES384) with its private key, asks the token endpoint for a token
with client_credentials, then searches Patients with it. It prints one JSON line of what it saw;
tests/api/smart.rs checks that line. Standard library HTTP only, so that nothing of emrsync's
own code is on the client's side.
"""
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import jwt


def post_form(url, form):
    data = urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def get(url, token):
    req = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    )
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def main():
    fhir_base, client_id, kid, key_path = sys.argv[1:5]
    with urllib.request.urlopen(f"{fhir_base}/.well-known/smart-configuration") as r:
        config = json.loads(r.read())
    token_url = config["token_endpoint"]
    with open(key_path) as f:
        private_key = f.read()
    now = int(time.time())
    assertion = jwt.encode(
        {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240,
         "jti": str(uuid.uuid4())},
        private_key,
        algorithm="ES384",
        headers={"kid": kid},
    )
    form = {
        "grant_type": "client_credentials",
        "scope": "system/Patient.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    status, body = post_form(token_url, form)
    out = {"token_status": status, "scope": (body or {}).get("scope")}
    replay_status, _ = post_form(token_url, form)
    out["replay_status"] = replay_status
    if status == 200:
        token = body["access_token"]
        s, bundle = get(f"{fhir_base}/Patient?_count=50", token)
        out["search_status"] = s
        out["patients"] = sorted(e["resource"]["id"] for e in (bundle or {}).get("entry", []))
        out["observation_status"] = get(f"{fhir_base}/Observation", token)[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
