#!/usr/bin/env bash
# The test swarm on this one machine: this host as manager (advertised on the docker0 bridge,
# so that containers reach it), plus worker nodes run as Docker-in-Docker containers built
# from the local base (scripts/swarm-node/Dockerfile) and joined with the worker token.
#
#   ensure-swarm.sh image   build the node image if it is missing (make test runs this)
#   ensure-swarm.sh up      idempotent: swarm, workers, the images they need; prints the nodes
#   ensure-swarm.sh down    workers leave and are removed, this host leaves the swarm; the
#                           workers' image stores (volumes nbc-swarm-wN-data) stay as a cache
#                           for the next `up`; `down --purge` removes them too
#
# Environment (all optional):
#   NBC_SWARM_WORKERS   number of workers            (default 1)
#   NBC_SWARM_IMAGES    image refs each worker needs (default: none); loaded once, then cached
#   NBC_SWARM_SHARED    a folder mounted at the same path on every node: the "shared
#                       filesystem" kernels' workspaces live on (default /tmp/nbc-swarm-shared)
# Run it under the Docker lock (flock /tmp/nbc-docker.lock): it changes the engine.
set -euo pipefail

ACTION="${1:-up}"
WORKERS="${NBC_SWARM_WORKERS:-1}"
IMAGES="${NBC_SWARM_IMAGES:-}"
SHARED="${NBC_SWARM_SHARED:-/tmp/nbc-swarm-shared}"
NODE_IMAGE="nbcontainers/swarm-node:bookworm"
NODE_LABEL="io.nbcontainers.swarm-node"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MADE="/var/tmp/nbc-swarm-made"  # present while the swarm is one this script made

log() { printf 'ensure-swarm: %s\n' "$*" >&2; }
die() { printf 'ensure-swarm: ERROR: %s\n' "$*" >&2; exit 1; }

swarm_state() { docker info --format '{{.Swarm.LocalNodeState}}'; }
bridge_ip() {
    local ip
    ip="$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}')"
    # After some engine restarts the bridge's IPAM config holds no gateway (seen with 20.10):
    # the docker0 interface still has the address. Never init a swarm on an empty address.
    [ -n "$ip" ] || ip="$(ip -4 -o addr show docker0 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}')"
    [ -n "$ip" ] || die "no address for the docker0 bridge: is the Docker engine's bridge network up?"
    echo "$ip"
}

build_image() {
    if docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then return; fi
    local base
    base="$(sed -n 's/^ARG BASE_IMAGE=//p' "$HERE/swarm-node/Dockerfile")"
    docker image inspect "$base" >/dev/null 2>&1 || die "no $base: run \`make base\` first"
    log "building $NODE_IMAGE (Debian's docker.io, about a minute)"
    docker build -q -t "$NODE_IMAGE" "$HERE/swarm-node" >/dev/null
}

# Wait until the engine inside worker $1 answers.
wait_inner() {
    local i
    for i in $(seq 1 120); do
        if docker exec "$1" docker info >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    docker logs --tail 30 "$1" >&2 || true
    die "the engine inside $1 did not start"
}

node_ready() {  # is a node of hostname $1 Ready in this swarm?
    docker node ls --format '{{.Hostname}} {{.Status}}' 2>/dev/null | grep -qx "$1 Ready"
}

start_worker() {
    local name="$1" addr="$2" token="$3"
    if [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" = "true" ] && node_ready "$name"; then
        log "$name already in the swarm"
    else
        docker rm -f "$name" >/dev/null 2>&1 || true
        # Down nodes of the same name (a worker killed by a test) would be ambiguous.
        docker node ls --format '{{.ID}} {{.Hostname}} {{.Status}}' \
            | awk -v n="$name" '$2 == n && $3 != "Ready" {print $1}' \
            | xargs -r docker node rm --force >/dev/null
        mkdir -p "$SHARED"
        # Not --privileged: it asks for every capability, and this machine's bounding set lacks
        # CAP_SYS_RESOURCE, so runc refuses. All the others, unconfined, and the cgroup tree
        # are what an engine inside needs.
        docker run -d --name "$name" --hostname "$name" --label "$NODE_LABEL=1" \
            --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined \
            --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
            --device-cgroup-rule 'a *:* rwm' -v /sys/fs/cgroup:/sys/fs/cgroup \
            -v "$name-data:/var/lib/docker" -v "$SHARED:$SHARED" "$NODE_IMAGE" >/dev/null
        wait_inner "$name"
        # Its store may remember a swarm of an earlier session.
        docker exec "$name" docker swarm leave --force >/dev/null 2>&1 || true
        docker exec "$name" docker swarm join --token "$token" "$addr:2377" >/dev/null
        local i
        for i in $(seq 1 60); do node_ready "$name" && break; sleep 0.5; done
        node_ready "$name" || die "$name joined but is not Ready"
        log "$name joined the swarm"
    fi
    docker node update --label-add "nbc.node=$name" "$name" >/dev/null
    local ref
    for ref in $IMAGES; do
        if ! docker exec "$name" docker image inspect "$ref" >/dev/null 2>&1; then
            log "loading $ref into $name (once; the volume $name-data keeps it)"
            docker save "$ref" | docker exec -i "$name" docker load -q >/dev/null
        fi
    done
}

up() {
    build_image
    local addr state
    addr="$(bridge_ip)"
    state="$(swarm_state)"
    if [ "$state" = "inactive" ]; then
        log "docker swarm init --advertise-addr $addr"
        # The marker says what init adds that `swarm leave` keeps: the docker_gwbridge network.
        if docker network inspect docker_gwbridge >/dev/null 2>&1; then : >"$MADE"
        else echo docker_gwbridge >"$MADE"; fi
        docker swarm init --advertise-addr "$addr" --listen-addr "$addr:2377" >/dev/null
    elif [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" != "true" ]; then
        die "this engine is in a swarm ($state) but not a manager: \`docker swarm leave\` first"
    fi
    docker node update --label-add nbc.node=manager "$(docker info --format '{{.Swarm.NodeID}}')" >/dev/null
    local token i
    token="$(docker swarm join-token -q worker)"
    for i in $(seq 1 "$WORKERS"); do
        start_worker "nbc-swarm-w$i" "$addr" "$token"
    done
    docker node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}' >&2
}

down() {
    local name
    for name in $(docker ps -a --filter "label=$NODE_LABEL" --format '{{.Names}}'); do
        docker exec "$name" docker swarm leave --force >/dev/null 2>&1 || true
        docker rm -f "$name" >/dev/null
        if [ "${1:-}" = "--purge" ]; then docker volume rm "$name-data" >/dev/null || true; fi
        log "removed $name"
    done
    # Only a swarm this script made: never someone else's.
    if [ -e "$MADE" ] && [ "$(swarm_state)" != "inactive" ]; then
        docker swarm leave --force >/dev/null
        log "this host left the swarm"
    fi
    if [ -e "$MADE" ] && grep -qx docker_gwbridge "$MADE"; then
        docker network rm docker_gwbridge >/dev/null 2>&1 || true
    fi
    rm -f "$MADE"
}

case "$ACTION" in
    image) build_image ;;
    up) up ;;
    down) down "${2:-}" ;;
    *) die "usage: $0 [image|up|down [--purge]]" ;;
esac
