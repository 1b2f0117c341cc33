#!/usr/bin/env bash
# Rootless Podman for the tests (Debian bookworm, as root), idempotent:
#   1. apt-get install podman uidmap slirp4netns catatonit where they are missing;
#   2. make the test user (default nbc-podman) with a sub-uid/sub-gid range, as `useradd -m`
#      gives every new user;
#   3. load the local Debian base image and the python catalog image from Docker into that
#      user's own image store, for the contract suite and the kernel tests (no registry here).
# The user's engine itself is started on demand by nbcontainers (podman system service on the
# user's runtime folder), as it is for every hub user; this script only prints where it is.
set -euo pipefail

USER_NAME="${NBC_PODMAN_USER:-nbc-podman}"
BASE="${NBC_PODMAN_IMAGE:-nbcontainers/base:bookworm}"
log() { printf 'ensure-podman: %s\n' "$*" >&2; }

# catatonit is Podman's init (a kernel container runs with init=True, as on Docker).
if ! command -v podman >/dev/null || ! command -v newuidmap >/dev/null \
    || [ ! -x /usr/libexec/podman/catatonit ]; then
    log "installing podman uidmap slirp4netns catatonit"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman uidmap slirp4netns catatonit >/dev/null
fi
if ! id "$USER_NAME" >/dev/null 2>&1; then
    log "adding user $USER_NAME"
    useradd -m -s /bin/bash "$USER_NAME"
fi
if ! grep -q "^$USER_NAME:" /etc/subuid || ! grep -q "^$USER_NAME:" /etc/subgid; then
    log "giving $USER_NAME a sub-uid/sub-gid range"
    usermod --add-subuids 200000-265535 --add-subgids 200000-265535 "$USER_NAME"
fi
uid=$(id -u "$USER_NAME")
# /dev/net/tun must be usable by users for rootless networking (slirp4netns).
[ -c /dev/net/tun ] && chmod 0666 /dev/net/tun
as_user() { runuser -u "$USER_NAME" -- env HOME="$(getent passwd "$USER_NAME" | cut -d: -f6)" \
    XDG_RUNTIME_DIR="/run/user/$uid" "$@"; }
install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "/run/user/$uid"
# Podman 4.3 here defaults rootless storage to vfs, which copies the whole image for every
# container (3-13 s per start for the python image); native overlay (kernel >= 5.13) takes
# 0.1 s. Pick overlay for a user who has no storage yet, where a probe shows it works.
home=$(getent passwd "$USER_NAME" | cut -d: -f6)
conf="$home/.config/containers/storage.conf"
if [ ! -e "$conf" ] && [ ! -d "$home/.local/share/containers/storage" ]; then
    probe=$(mktemp -d /tmp/nbc-overlay-probe.XXXXXX); chown "$USER_NAME" "$probe"
    if as_user podman --storage-driver overlay --root "$probe/root" --runroot "$probe/run" \
        info --format '{{.Store.GraphStatus}}' 2>/dev/null | grep -q 'Native Overlay Diff:true'; then
        log "rootless storage for $USER_NAME: native overlay"
        as_user sh -c 'mkdir -p "$HOME/.config/containers" && printf "[storage]\ndriver = \"overlay\"\n" > "$HOME/.config/containers/storage.conf"'
    fi
    rm -rf "$probe"
fi
# The base for the contract suite, and the python catalog image for the kernel tests (when a
# venv is given to read the catalog with and Docker has built it).
images="$BASE"
if [ -n "${NBC_VENV_PYTHON:-}" ]; then
    images="$images $("$NBC_VENV_PYTHON" -c 'from nbcontainers.catalog.entries import load_catalog; print(load_catalog()["python"].ref)')"
fi
for image in $images; do
    if ! as_user podman image exists "$image" 2>/dev/null && docker image inspect "$image" >/dev/null 2>&1; then
        log "loading $image into $USER_NAME's image store"
        docker save "$image" | as_user podman load -q >/dev/null
    fi
done
# The tests run nbcontainers as this user with the project's venv: its interpreter (pyenv's,
# under /root here) must be reachable. Grant traversal (o+x, no listing) where it is missing.
py="${NBC_VENV_PYTHON:-}"
if [ -n "$py" ]; then
    real=$(readlink -f "$py"); dir=$(dirname "$real")
    while [ "$dir" != "/" ]; do
        if [ "$(( 0$(stat -c %a "$dir") & 1 ))" -eq 0 ]; then log "o+x on $dir (for $real)"; chmod o+x "$dir"; fi
        dir=$(dirname "$dir")
    done
fi
log "podman $(podman --version | awk '{print $3}') for $USER_NAME (uid $uid); its engine: unix:///run/user/$uid/podman/podman.sock"
