#!/usr/bin/env bash
# Builds the JupyterLab 4 / Notebook 7 extension (labextension/) into nbcontainers/labextension/,
# where the wheel ships it prebuilt. Reproducible: `jlpm install --immutable` installs exactly
# what labextension/yarn.lock pins, and webpack shares JupyterLab's own packages as those of
# the JupyterLab installed in the venv (its staging/ folder is the "core" the extension is
# built against). Idempotent: nothing runs when the build is newer than every source.
# Needs Node >= 18 and the npm registry (only here, never for a user installing the wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SRC=labextension
OUT=nbcontainers/labextension
PY=${PYTHON:-$ROOT/.venv/bin/python}
JLPM=${JLPM:-$(dirname "$PY")/jlpm}

stamp="$OUT/package.json"
if [[ -f $stamp && -z ${FORCE:-} ]]; then
    newer=$(find "$SRC/src" "$SRC/style" "$SRC/package.json" "$SRC/yarn.lock" "$SRC/tsconfig.json" \
        -newer "$stamp" -print -quit)
    if [[ -z $newer ]]; then
        echo "labextension: $OUT is up to date"
        exit 0
    fi
fi

command -v node >/dev/null || { echo "Error: Node.js (>= 18) is needed to build the labextension: apt-get install nodejs" >&2; exit 1; }
[[ -x $JLPM ]] || { echo "Error: $JLPM is missing: pip install jupyterlab (it ships jlpm)" >&2; exit 1; }
JUPYTERLAB_CORE=$("$PY" -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')
export JUPYTERLAB_CORE

cd "$SRC"
# The lockfile is the truth: an install that would change it fails instead.
YARN_ENABLE_IMMUTABLE_INSTALLS=true "$JLPM" install
"$JLPM" build
echo "labextension: built into $OUT ($(du -sh "$ROOT/$OUT" | cut -f1))"
