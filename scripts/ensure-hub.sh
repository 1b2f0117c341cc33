#!/usr/bin/env bash
# What the JupyterHub test needs on a fresh Debian machine (as root), idempotent:
#   1. JupyterHub from PyPI into the project's venv (nowhere else);
#   2. configurable-http-proxy from npm (Node 20 is installed on these machines);
#   3. two hub users (default nbc-hub-a, nbc-hub-b) made with `useradd -m`, each with a
#      sub-uid/sub-gid range and a known password (for PAM, the example's authenticator);
#   4. the nbc-* kernelspecs in the venv's prefix (users' servers run that venv);
#   5. the rootless-Podman prerequisites, through ensure-podman.sh (podman, uidmap, /dev/net/tun
#      usable, the venv's interpreter reachable by users).
# The shared image store itself is made by `nbcontainers hub setup`, which the test runs.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${NBC_VENV:-.venv}"
USERS="${NBC_HUB_USERS:-nbc-hub-a nbc-hub-b}"
PASSWORD="${NBC_HUB_PASSWORD:-nbc-hub-test-password}"
log() { printf 'ensure-hub: %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/jupyterhub" ]; then
    log "installing jupyterhub into $VENV"
    "$VENV/bin/pip" install --quiet 'jupyterhub>=5'
fi
if ! command -v configurable-http-proxy >/dev/null; then
    log "installing configurable-http-proxy (npm)"
    npm install -g --silent configurable-http-proxy >/dev/null
fi
# Users' servers run this venv: the nbc-* kernelspecs go into its prefix.
"$VENV/bin/nbcontainers" kernelspec install --sys-prefix >/dev/null
NBC_VENV_PYTHON="$(pwd)/$VENV/bin/python" bash scripts/ensure-podman.sh
# The venv itself (not only its interpreter) must be readable by the users' servers.
dir=$(readlink -f "$VENV")
while [ "$dir" != "/" ]; do
    if [ "$(( 0$(stat -c %a "$dir") & 1 ))" -eq 0 ]; then log "o+x on $dir"; chmod o+x "$dir"; fi
    dir=$(dirname "$dir")
done
for user in $USERS; do
    if ! id "$user" >/dev/null 2>&1; then
        log "adding user $user"
        useradd -m -s /bin/bash "$user"
    fi
    if ! grep -q "^$user:" /etc/subuid || ! grep -q "^$user:" /etc/subgid; then
        # A free range above every existing one, as `nbcontainers hub setup --fix` would pick.
        start=$(awk -F: 'BEGIN{m=100000} {e=$2+$3; if (e>m) m=e} END{print m}' /etc/subuid /etc/subgid)
        log "giving $user sub-ids $start-$((start + 65535))"
        usermod --add-subuids "$start-$((start + 65535))" --add-subgids "$start-$((start + 65535))" "$user"
    fi
    echo "$user:$PASSWORD" | chpasswd
done
log "jupyterhub $("$VENV/bin/jupyterhub" --version), configurable-http-proxy $(configurable-http-proxy --version), users: $USERS"
