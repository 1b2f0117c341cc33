#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine (Debian bookworm, as root).
#
# Idempotent:
#   1. If any docker client already gets an answer from an engine
#      (`docker info` within a timeout), say which one and exit 0.
#   2. Otherwise install the engine if `dockerd` is missing
#      (apt-get install docker.io: dockerd 20.10, runc, containerd, its own
#      20.10 client at /usr/bin/docker), start `dockerd` detached in the
#      background (log: /var/log/nbcontainers-dockerd.log) and wait up to
#      60 s for it to answer. If it does not, fail with the log tail.
#
# Environment knobs (all optional):
#   NBC_DOCKERD_LOG           log file for dockerd      (default below)
#   NBC_DOCKERD_WAIT          seconds to wait for it    (default 60)
#   NBC_DOCKER_INFO_TIMEOUT   seconds per `docker info` (default 10)
set -euo pipefail

LOG="${NBC_DOCKERD_LOG:-/var/log/nbcontainers-dockerd.log}"
WAIT_S="${NBC_DOCKERD_WAIT:-60}"
INFO_TIMEOUT="${NBC_DOCKER_INFO_TIMEOUT:-10}"

log() { printf 'ensure-docker: %s\n' "$*" >&2; }
die() { printf 'ensure-docker: ERROR: %s\n' "$*" >&2; exit 1; }

# Candidate clients, deduplicated, in order: first on PATH, then the two
# known locations (/usr/local/bin/docker: 28.x; /usr/bin/docker: Debian 20.10).
candidates() {
    local seen="" c
    for c in "$(command -v docker 2>/dev/null || true)" /usr/local/bin/docker /usr/bin/docker; do
        if [ -z "$c" ] || [ ! -x "$c" ]; then continue; fi
        case " $seen " in *" $c "*) continue ;; esac
        seen="$seen $c"
        printf '%s\n' "$c"
    done
}

# Print "<client> <server version>" for the first client that gets an answer;
# return 1 if none does.
find_working_client() {
    local c ver
    while IFS= read -r c; do
        if ver="$(timeout "$INFO_TIMEOUT" "$c" info --format '{{.ServerVersion}}' 2>/dev/null)" \
            && [ -n "$ver" ]; then
            printf '%s %s\n' "$c" "$ver"
            return 0
        fi
    done < <(candidates)
    return 1
}

# report_ok "<client> <server version>" "<how>"
report_ok() {
    local client ver cver
    read -r client ver <<<"$1"
    cver="$(timeout "$INFO_TIMEOUT" "$client" version --format '{{.Client.Version}}' 2>/dev/null || echo '?')"
    echo "docker engine ${ver} answers via ${client} (client ${cver}) $2"
}

# PIDs of running dockerd processes, one a line (no procps needed).
dockerd_pids() {
    local f comm
    for f in /proc/[0-9]*/comm; do
        comm="$(cat "$f" 2>/dev/null)" || continue
        if [ "$comm" = dockerd ]; then f="${f#/proc/}"; printf '%s\n' "${f%/comm}"; fi
    done
}

# ---------------------------------------------------------------- 1. running?
if found="$(find_working_client)"; then
    report_ok "$found" "(already running)"
    exit 0
fi

# ------------------------------------------------------------- 2. install?
[ "$(id -u)" -eq 0 ] || die "no docker engine answers and starting one needs root (run: sudo $0)"

if ! command -v dockerd >/dev/null 2>&1 && [ ! -x /usr/sbin/dockerd ] && [ ! -x /usr/bin/dockerd ]; then
    log "dockerd not found: installing docker.io with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # Without systemd the package's postinst runs `invoke-rc.d docker start
    # || exit 1` (sysvinit script), which can fail the whole install in a
    # container. Unless the machine already has a policy, forbid service
    # starts during the install (policy-rc.d exit 101) and start dockerd
    # ourselves below. With systemd, let the package start docker.service.
    POLICY=/usr/sbin/policy-rc.d
    added_policy=0
    if [ ! -d /run/systemd/system ] && [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\n# temporary, from nbcontainers ensure-docker.sh\nexit 101\n' >"$POLICY"
        chmod 0755 "$POLICY"
        added_policy=1
        trap 'rm -f "$POLICY"' EXIT
    fi
    # apt's chatter goes to stderr: stdout carries only the result line.
    apt-get update >&2
    apt-get install -y docker.io >&2
    if [ "$added_policy" = 1 ]; then rm -f "$POLICY"; trap - EXIT; fi
fi
DOCKERD="$(command -v dockerd 2>/dev/null || true)"
for d in /usr/sbin/dockerd /usr/bin/dockerd; do
    [ -n "$DOCKERD" ] && break
    [ -x "$d" ] && DOCKERD="$d"
done
[ -n "$DOCKERD" ] || die "dockerd still not found after installing docker.io"

# The engine may have been started by the package's postinst (systemd hosts).
if found="$(find_working_client)"; then
    report_ok "$found" "(started by the package install)"
    exit 0
fi

# ---------------------------------------------------------------- 3. start
mkdir -p "$(dirname "$LOG")"
pids="$(dockerd_pids | tr '\n' ' ')"
if [ -n "${pids// /}" ]; then
    # One is already up (maybe still starting, or started by someone else in
    # parallel): don't start a second one, which would fight over the pidfile.
    log "a dockerd process exists (pid ${pids% }) but does not answer yet: waiting for it"
else
    # A stale pidfile left by a dockerd that died would make the new one refuse to start.
    PIDFILE=/var/run/docker.pid
    if [ -f "$PIDFILE" ]; then
        oldpid="$(cat "$PIDFILE" 2>/dev/null || true)"
        if [ -z "$oldpid" ] || ! kill -0 "$oldpid" 2>/dev/null; then
            log "removing stale $PIDFILE (pid '${oldpid}' is not running)"
            rm -f "$PIDFILE"
        fi
    fi
    log "starting $DOCKERD in the background (log: $LOG)"
    printf '\n==== %s ensure-docker: starting %s ====\n' "$(date -Is)" "$DOCKERD" >>"$LOG"
    # setsid + nohup: own session, immune to this shell's hangup; stdin from
    # /dev/null so it holds no terminal or pipe of the caller; and none of the
    # caller's other descriptors either (a `flock FILE make test` would
    # otherwise leave FILE locked for as long as dockerd runs).
    inherited=()
    for fd in /proc/$$/fd/*; do
        fd="${fd##*/}"
        if [ "$fd" -gt 2 ] 2>/dev/null; then inherited+=("$fd>&-"); fi
    done
    eval "setsid nohup \"\$DOCKERD\" </dev/null >>\"\$LOG\" 2>&1 ${inherited[*]} &"
    disown 2>/dev/null || true
fi

# ----------------------------------------------------------------- 4. wait
deadline=$(( SECONDS + WAIT_S ))
while (( SECONDS < deadline )); do
    if found="$(find_working_client)"; then
        report_ok "$found" "(started dockerd, log: $LOG)"
        exit 0
    fi
    if [ -z "$(dockerd_pids)" ]; then
        # It died: no point in waiting the full minute.
        sleep 1
        [ -n "$(dockerd_pids)" ] || break
    fi
    sleep 1
done

{
    pids="$(dockerd_pids | tr '\n' ' ')"
    if [ -n "${pids// /}" ]; then
        echo "ensure-docker: ERROR: dockerd (pid ${pids% }) is running but did not answer within ${WAIT_S}s."
    else
        echo "ensure-docker: ERROR: dockerd exited without answering (after $(( SECONDS - deadline + WAIT_S ))s)."
    fi
    echo "ensure-docker: clients tried: $(candidates | paste -sd' ')"
    echo "ensure-docker: last lines of $LOG:"
    tail -n 40 "$LOG" 2>/dev/null | sed 's/^/    /' || true
} >&2
exit 1
