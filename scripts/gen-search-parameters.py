#!/usr/bin/env python3
"""Derive emrsync's search parameter facts from the FHIR R4 examples package.

Reads Bundle-searchParams.json of hl7.fhir.r4.examples-4.0.1.tgz (the specification's 1,375
SearchParameters) and writes capability/search-parameters.json:

  { base type: { code: { "type", "expression", "url", "target"?, "components"? } } }

and capability/compartment-patient.json (from CompartmentDefinition-patient.json):

  { resource type: [ reference parameter codes that make a resource a member ] }

where `expression` keeps only the union branches of the spec's expression that apply to that
base (the spec writes one expression for all bases: "Patient.name.family | Practitioner.name.family"),
and a composite's components name the component parameter's code, type and relative expression.
Parameters of base Resource or DomainResource (_id, _lastUpdated, ...) are listed once under
that base and apply to every type.

Usage: scripts/gen-search-parameters.py [path/to/package.tgz]
"""
import json
import os
import re
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PKG = os.path.join(HERE, "..", "..", "shared", "fhir-packages", "hl7.fhir.r4.examples-4.0.1.tgz")
OUT = os.path.join(HERE, "..", "capability", "search-parameters.json")
COMPARTMENT_OUT = os.path.join(HERE, "..", "capability", "compartment-patient.json")


def split_union(expression):
    """Top-level `|` branches (not inside parentheses or quotes)."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == "|":
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def for_base(expression, base):
    """The branches of `expression` that start at `base` (all of them if none names a type)."""
    branches = split_union(expression)
    mine = [b for b in branches if re.match(r"^\(*" + re.escape(base) + r"\b", b)]
    if not mine:
        return expression
    return " | ".join(mine)


def main(pkg):
    with tarfile.open(pkg) as tf:
        bundle = json.load(tf.extractfile("package/Bundle-searchParams.json"))
        compartment = json.load(tf.extractfile("package/CompartmentDefinition-patient.json"))
    members = {r["code"]: r["param"] for r in compartment["resource"] if r.get("param")}
    with open(COMPARTMENT_OUT, "w") as f:
        json.dump(members, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {COMPARTMENT_OUT}: {len(members)} resource types in the Patient compartment")
    params = [e["resource"] for e in bundle["entry"]]
    by_url = {p["url"]: p for p in params}
    out = {}
    skipped = []
    for p in params:
        expression = p.get("expression")
        if not expression:
            skipped.append(p["code"])  # _text, _content, _query: no expression in R4
            continue
        for base in p["base"]:
            entry = {
                "type": p["type"],
                "expression": for_base(expression, base),
                "url": p["url"],
            }
            if p.get("target"):
                entry["target"] = sorted(p["target"])
            if p["type"] == "composite":
                entry["components"] = [
                    {
                        "code": by_url[c["definition"]]["code"],
                        "type": by_url[c["definition"]]["type"],
                        "expression": c["expression"],
                    }
                    for c in p["component"]
                ]
            out.setdefault(base, {})[p["code"]] = entry
    out = {base: dict(sorted(codes.items())) for base, codes in sorted(out.items())}
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    count = sum(len(v) for v in out.values())
    print(f"wrote {OUT}: {count} parameters over {len(out)} bases; without expression: {skipped}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PKG)
