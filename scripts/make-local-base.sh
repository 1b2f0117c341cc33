#!/usr/bin/env bash
# Build a local Debian bookworm base image without any container registry:
#   debootstrap --variant=minbase bookworm DIR <mirror from this machine's apt sources>
#   tar -C DIR -c . | docker import - nbcontainers/base:bookworm
# Idempotent: exits at once when the image already exists. Run as root.
#
# The nbcontainers Dockerfiles take their base as a build ARG:
#   docker build --build-arg BASE_IMAGE=nbcontainers/base:bookworm ...
# Note: minbase has apt but not ca-certificates; the Dockerfiles install
# what they need.
#
# Environment knobs (all optional):
#   NBC_BASE_IMAGE      image name        (default nbcontainers/base:bookworm)
#   NBC_DEBIAN_MIRROR   mirror URL        (default: read from apt sources)
#   NBC_DEBIAN_SUITE    suite             (default bookworm)
#   DOCKER              docker client     (default: first one that answers)
set -euo pipefail

IMAGE="${NBC_BASE_IMAGE:-nbcontainers/base:bookworm}"
SUITE="${NBC_DEBIAN_SUITE:-bookworm}"
DEFAULT_MIRROR="http://deb.debian.org/debian"

log() { printf 'make-local-base: %s\n' "$*" >&2; }
die() { printf 'make-local-base: ERROR: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------ docker client
pick_docker() {
    local c
    for c in ${DOCKER:-} "$(command -v docker 2>/dev/null || true)" /usr/local/bin/docker /usr/bin/docker; do
        [ -n "$c" ] || continue
        if timeout 10 "$c" info >/dev/null 2>&1; then printf '%s\n' "$c"; return 0; fi
    done
    return 1
}
DOCKER_BIN="$(pick_docker)" || die "no docker client gets an answer from an engine (run scripts/ensure-docker.sh first)"

image_exists() { "$DOCKER_BIN" image inspect "$IMAGE" >/dev/null 2>&1; }

if image_exists; then
    echo "$IMAGE"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root (run: sudo $0)"

# One build at a time; a second caller waits, then finds the image.
LOCK=/var/lock/nbcontainers-make-local-base.lock
mkdir -p "$(dirname "$LOCK")"
exec 9>"$LOCK"
flock 9
if image_exists; then
    echo "$IMAGE"
    exit 0
fi

# ------------------------------------------------------------ apt mirror
# First URI of a deb822 stanza (/etc/apt/sources.list.d/*.sources) whose
# Suites has exactly $1 and Types has "deb".
mirror_from_deb822() {
    local suite="$1" f
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v suite="$suite" '
            function flush() {
                if (enabled && types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "") {
                    split(uris, u, " "); print u[1]; found = 1; exit
                }
                types = ""; suites = ""; uris = ""; enabled = 1
            }
            BEGIN { enabled = 1 }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                line = $0
                key = tolower(line); sub(/:.*/, "", key)
                val = line; sub(/^[^:]*:[ \t]*/, "", val); gsub(/[ \t]+/, " ", val); sub(/ $/, "", val)
                if (key == "types") types = val
                else if (key == "suites") suites = val
                else if (key == "uris") uris = val
                else if (key == "enabled" && tolower(val) == "no") enabled = 0
            }
            END { if (!found) flush() }
        ' "$f" | head -n1
    done | head -n1
}

# URI of a one-line "deb [opts] URI SUITE comp..." entry for suite $1.
mirror_from_list() {
    local suite="$1" f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk -v suite="$suite" '
            $1 != "deb" { next }
            {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }
        ' "$f"
    done | head -n1
}

MIRROR="${NBC_DEBIAN_MIRROR:-}"
[ -n "$MIRROR" ] || MIRROR="$(mirror_from_deb822 "$SUITE" || true)"
[ -n "$MIRROR" ] || MIRROR="$(mirror_from_list "$SUITE" || true)"
if [ -z "$MIRROR" ]; then
    log "no '$SUITE' mirror found in the apt sources; using $DEFAULT_MIRROR"
    MIRROR="$DEFAULT_MIRROR"
fi
SECURITY_MIRROR="$(mirror_from_deb822 "$SUITE-security" || true)"
[ -n "$SECURITY_MIRROR" ] || SECURITY_MIRROR="$(mirror_from_list "$SUITE-security" || true)"

# ------------------------------------------------------------ debootstrap
if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap
fi

WORK="$(mktemp -d /var/tmp/nbc-base.XXXXXX)"
ROOTFS="$WORK/rootfs"
cleanup() {
    # debootstrap mounts proc/sys inside the target; if it failed midway they
    # may still be there: unmount before deleting, and never cross filesystems.
    local m
    awk -v p="$WORK/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r | while IFS= read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

log "debootstrap --variant=minbase $SUITE $ROOTFS $MIRROR"
start=$SECONDS
if ! debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2 || true
    [ -f "$ROOTFS/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (mirror: $MIRROR)"
fi

# apt sources in the image: the same mirror, plus updates and security (like
# the upstream debian:bookworm-slim image).
{
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    [ -z "$SECURITY_MIRROR" ] || echo "deb $SECURITY_MIRROR $SUITE-security main"
} >"$ROOTFS/etc/apt/sources.list"
# Trim what an image does not need.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
       "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/* "$ROOTFS"/debootstrap
: >"$ROOTFS/etc/hostname"

log "docker import -> $IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . | "$DOCKER_BIN" import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --message "debootstrap --variant=minbase $SUITE $MIRROR (nbcontainers scripts/make-local-base.sh)" \
    - "$IMAGE" >/dev/null
image_exists || die "docker import did not produce $IMAGE"
log "done in $(( SECONDS - start )) s"
echo "$IMAGE"
