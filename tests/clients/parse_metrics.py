"""Reads a /metrics page on stdin with the Prometheus project's own text-format parser
(PyPI prometheus-client) and prints every sample as JSON: [name, labels, value]. A page the
parser cannot read makes it fail with the parser's error."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
json.dump(samples, sys.stdout)
