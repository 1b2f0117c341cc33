#!/usr/bin/env bash
# Execute the example notebooks and save them with their outputs (what the README shows).
# Each runs in a scratch copy of examples/, so the files a notebook writes (an export's
# serving-model/ folder) stay out of the checkout; only the executed .ipynb comes back.
# Usage: scripts/run-examples.sh [NOTEBOOK...]   (default: every examples/*.ipynb)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${BIN:-.venv/bin}
notebooks=("$@")
[ ${#notebooks[@]} -gt 0 ] || notebooks=(examples/quickstart.ipynb examples/container-magics.ipynb examples/export-serving.ipynb)
scratch=$(mktemp -d /tmp/nbc-examples.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
for nb in "${notebooks[@]}"; do
  name=$(basename "$nb")
  cp "$nb" "$scratch/$name"
  echo "executing $nb"
  (cd "$scratch" && "$ROOT/$BIN/jupyter" execute --inplace --timeout=600 "$name")
  cp "$scratch/$name" "$nb"
done
