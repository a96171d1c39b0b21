"""A SMART standalone launch by the `fhirclient` package (SMART's own Python client), with a
person at the browser played by plain HTTP: the login form and the consent form are read from
the pages and submitted as a browser would submit them.

fhirclient reads the server's CapabilityStatement (with its own R4 models) for the OAuth
endpoints, builds the authorize URL (state, PKCE S256, aud), exchanges the code for a token,
and then reads the launch patient and searches with it. Prints one JSON line of what it saw;
tests/api/launch_clients.rs checks that line.

Usage: standalone_launch.py BASE CLIENT_ID REDIRECT_URI USERNAME PASSWORD OTHER_PATIENT_ID
"""
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser

from fhirclient import client
from fhirclient.models.observation import Observation


class Forms(HTMLParser):
    """The forms of a page: each form's action and the fields a browser would submit."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "fields": [], "buttons": []})
        elif tag == "input" and self.forms:
            kind = a.get("type", "text")
            if kind == "radio":
                self.forms[-1]["fields"].append((a["name"], a["value"], "radio"))
            elif "name" in a:
                self.forms[-1]["fields"].append((a["name"], a.get("value", ""), kind))
        elif tag == "button" and self.forms and "name" in a:
            self.forms[-1]["buttons"].append((a["name"], a["value"]))


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


browser = urllib.request.build_opener(NoRedirect)


def fetch(url, form=None):
    """GET (or POST a form); the status, the body and the Location header."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with browser.open(urllib.request.Request(url, data=data)) as r:
            return r.status, r.read().decode(), r.headers.get("Location")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("Location")


def forms_of(html):
    p = Forms()
    p.feed(html)
    return p.forms


def main():
    base, client_id, redirect, username, password, other = sys.argv[1:7]
    seen = {}
    smart = client.FHIRClient(
        settings={
            "app_id": client_id,
            "api_base": base,
            "redirect_uri": redirect,
            "scope": "openid fhirUser launch/patient patient/*.rs offline_access",
        }
    )
    authorize_url = smart.authorize_url
    seen["authorize_url_has_pkce"] = "code_challenge_method=S256" in authorize_url

    # the login page: fill in the user's name and password, keep the hidden fields
    status, html, _ = fetch(authorize_url)
    seen["login_status"] = status
    login = forms_of(html)[0]
    form = [(n, v) for n, v, kind in login["fields"] if kind == "hidden"]
    form += [("username", username), ("password", password)]
    action = urllib.parse.urljoin(authorize_url, login["action"])
    status, html, _ = fetch(action, form)
    seen["consent_status"] = status
    seen["consent_lists_scope"] = "patient/*.rs" in html

    # the consent page: approve
    consent = forms_of(html)[-1]
    form = [(n, v) for n, v, kind in consent["fields"] if kind == "hidden"]
    form.append(("decision", "approve"))
    status, _, location = fetch(urllib.parse.urljoin(action, consent["action"]), form)
    seen["redirect_status"] = status
    seen["redirect_to_app"] = (location or "").startswith(redirect)

    # back at the app: fhirclient checks the state and exchanges the code (with the verifier)
    smart.handle_callback(location)
    seen["ready"] = smart.ready
    seen["patient_id"] = smart.patient_id
    seen["has_refresh_token"] = smart.server.auth.refresh_token is not None
    seen["patient_family"] = smart.patient.name[0].family
    found = Observation.where(struct={"patient": smart.patient_id}).perform_resources(
        smart.server
    )
    seen["observations"] = sorted(o.id for o in found)
    # another patient's record is refused by the server, and fhirclient raises
    try:
        smart.server.request_json(f"Patient/{other}")
        seen["other_patient"] = "read"
    except Exception as e:  # fhirclient raises FHIRUnauthorizedException or HTTPError
        seen["other_patient"] = getattr(getattr(e, "response", None), "status_code", str(e))
    # a refresh, as the app would do when its token expires
    smart.reauthorize()
    seen["refreshed"] = smart.ready and smart.server.auth.access_token is not None
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
