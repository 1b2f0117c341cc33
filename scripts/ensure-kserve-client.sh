#!/usr/bin/env bash
# The `kserve` package's Open Inference Protocol clients, in a venv of their own (idempotent):
# kserve pins pandas<3 and psutil<6, which would downgrade the project's test venv, so the
# serving test (tests/serving/test_clients_docker.py) runs its client script with
# .venv-kserve/bin/python instead. About a minute the first time; nothing once made.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${NBC_KSERVE_VENV:-.venv-kserve}"
PIN="kserve==0.21.0"
STAMP="$VENV/.installed-$PIN"
log() { printf 'ensure-kserve-client: %s\n' "$*" >&2; }

if [ -f "$STAMP" ] && "$VENV/bin/python" -c 'import kserve' 2>/dev/null; then
    exit 0
fi
log "installing $PIN into $VENV"
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "$PIN"
"$VENV/bin/python" -c 'from kserve import InferenceRESTClient, InferenceGRPCClient'
touch "$STAMP"
