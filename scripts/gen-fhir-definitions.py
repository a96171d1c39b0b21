#!/usr/bin/env python3
"""Derive emrsync's validation facts from the FHIR R4 examples package.

Reads the core StructureDefinitions, ValueSets and CodeSystems of
hl7.fhir.r4.examples-4.0.1.tgz and writes capability/fhir/definitions.json:

  primitives: primitive type -> anchored regex from the spec
  types:      type or backbone path -> element name -> [types, max, binding or null, choice, min]
  resources:  the resource type names
  valuesets:  required-binding value set -> {system: [codes]}, only for value sets that
              expand fully from the package (others are left unchecked, on purpose)

Usage: scripts/gen-fhir-definitions.py [path/to/package.tgz]
"""
import json
import os
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PKG = os.path.join(HERE, "..", "..", "shared", "fhir-packages", "hl7.fhir.r4.examples-4.0.1.tgz")
OUT = os.path.join(HERE, "..", "capability", "fhir", "definitions.json")
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"


def load(pkg):
    by_kind = {"StructureDefinition": [], "ValueSet": {}, "CodeSystem": {}}
    with tarfile.open(pkg) as tf:
        for m in tf.getmembers():
            name = os.path.basename(m.name)
            kind = name.split("-", 1)[0]
            if kind not in by_kind or not name.endswith(".json"):
                continue
            d = json.load(tf.extractfile(m))
            if kind == "StructureDefinition":
                by_kind[kind].append(d)
            elif "url" in d:
                by_kind[kind][d["url"]] = d
    return by_kind


def type_code(t, path, is_resource_root_id):
    code = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in t.get("extension", []):
            if ext["url"] == FHIR_TYPE_EXT:
                code = ext.get("valueUrl") or ext.get("valueUri")
                break
        else:
            code = "string"
    if is_resource_root_id:
        code = "id"  # R4 snapshots type Resource.id as string; the spec's rule is type id
    return code


def all_codes(concepts):
    for c in concepts or []:
        yield c["code"]
        yield from all_codes(c.get("concept"))


def expand(vs_url, valuesets, codesystems, seen=()):
    """Return {system: set(codes)} or None when the package cannot expand it fully."""
    url = vs_url.split("|")[0]
    vs = valuesets.get(url)
    if vs is None or url in seen:
        return None
    out = {}
    compose = vs.get("compose", {})
    if compose.get("exclude"):
        return None
    for inc in compose.get("include", []):
        if inc.get("filter"):
            return None
        for imported in inc.get("valueSet", []):
            sub = expand(imported, valuesets, codesystems, seen + (url,))
            if sub is None:
                return None
            for s, codes in sub.items():
                out.setdefault(s, set()).update(codes)
        system = inc.get("system")
        if not system:
            continue
        if inc.get("concept"):
            out.setdefault(system, set()).update(c["code"] for c in inc["concept"])
        else:
            cs = codesystems.get(system)
            if cs is None or cs.get("content") != "complete":
                return None
            out.setdefault(system, set()).update(all_codes(cs.get("concept")))
    return out or None


def main():
    pkg = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PKG
    data = load(pkg)
    primitives, types, resources, bindings, aliases = {}, {}, [], set(), {}
    summary = {}  # resource type -> its top-level elements marked isSummary (for _summary=true)
    for sd in data["StructureDefinition"]:
        core = "http://hl7.org/fhir/StructureDefinition/"
        if sd.get("kind") == "logical":
            continue
        if sd.get("derivation") == "constraint":
            # Age, Duration, SimpleQuantity...: core types that constrain another one
            if sd["kind"] == "complex-type" and sd["url"] == core + sd["name"] and sd["name"] != sd["type"]:
                aliases[sd["name"]] = sd["type"]
            continue
        if sd["url"] != "http://hl7.org/fhir/StructureDefinition/" + sd["type"]:
            continue
        kind, tname = sd["kind"], sd["type"]
        if kind == "primitive-type":
            for e in sd["snapshot"]["element"]:
                if e["path"] == tname + ".value":
                    rx = [x["valueString"] for x in e["type"][0].get("extension", []) if x["url"] == REGEX_EXT]
                    primitives[tname] = rx[0] if rx else None
            continue
        if kind == "resource" and not sd.get("abstract"):
            resources.append(tname)
        elements = sd["snapshot"]["element"]
        by_path = {e["path"]: e for e in elements}
        for e in elements:
            path = e["path"]
            if "." not in path:
                continue
            parent, name = path.rsplit(".", 1)
            if e.get("max") == "0":
                continue
            choice = name.endswith("[x]")
            if choice:
                name = name[:-3]
            ref = e.get("contentReference")
            if ref:
                tlist = ["#" + ref[1:]]
            else:
                is_root_id = kind == "resource" and path == tname + ".id"
                tlist = [type_code(t, path, is_root_id) for t in e.get("type", [])]
                if tlist in (["BackboneElement"], ["Element"]) and any(p.startswith(path + ".") for p in by_path):
                    tlist = ["#" + path]  # an inline structure: its own entry in `types`
            binding = None
            b = e.get("binding")
            if b and b.get("strength") == "required" and b.get("valueSet"):
                binding = b["valueSet"].split("|")[0]
                bindings.add(binding)
            if kind == "resource" and parent == tname and e.get("isSummary"):
                summary.setdefault(tname, []).append(name)
            types.setdefault(parent, {})[name] = [tlist, e.get("max", "1"), binding, choice, e.get("min", 0)]
    valuesets = {}
    for url in sorted(bindings):
        exp = expand(url, data["ValueSet"], data["CodeSystem"])
        if exp is not None:
            valuesets[url] = {s: sorted(c) for s, c in sorted(exp.items())}
    out = {
        "source": "hl7.fhir.r4.examples 4.0.1, generated by scripts/gen-fhir-definitions.py",
        "primitives": dict(sorted(primitives.items())),
        "resources": sorted(resources),
        "aliases": dict(sorted(aliases.items())),
        "types": dict(sorted(types.items())),
        "valuesets": valuesets,
        "summary": {t: summary.get(t, []) for t in sorted(resources)},
    }
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=False)
        f.write("\n")
    print(f"{len(resources)} resources, {len(types)} structures, {len(primitives)} primitives, "
          f"{len(valuesets)}/{len(bindings)} required value sets expanded -> {os.path.relpath(OUT)}")


if __name__ == "__main__":
    main()
