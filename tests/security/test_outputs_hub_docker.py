"""user ↔ user on one hub host: another local user cannot read what a user's notebook prints,
relayed from a container kernel by `%container use` or not.

A real JupyterHub from examples/hub/jupyterhub_config.py (as root, PAM users) starts user A's
server; A's notebook kernel runs `%container use` and prints a secret. User B, with a shell
on the same host, plays the attacker the way anyone can: every listening TCP socket of A's
uid is in /proc/net/tcp and every bound Unix socket in /proc/net/unix; B subscribes to all of
them with ZeroMQ (a SUB socket needs no key: the HMAC key signs messages, it hides nothing).

Seen on main before the fix: B read A's relayed output ("attacker saw the secret" on
tcp://127.0.0.1:<A's IOPub port>): the example hub ran kernels on TCP.
After: the kernels' sockets are ipc files in 0700 folders, so B cannot even connect
(PermissionError), and A's own frontend still gets every output.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from ..hub.hubdrive import Hub, execute, kill_user_processes, start_hub, stop_hub

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

VICTIM, ATTACKER = "nbc-hub-a", "nbc-hub-b"
PASSWORD = os.environ.get("NBC_HUB_PASSWORD", "nbc-hub-test-password")
LISTEN_SECONDS = 12.0

# What B runs, as B, with nothing but the host's public tables to go on.
SPY = r"""
import json, os, socket, sys, time
import zmq
victim_uid, secret, seconds = int(sys.argv[1]), sys.argv[2].encode(), float(sys.argv[3])
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"")
tcp, ipc, denied = [], [], []
for line in open("/proc/net/tcp").read().splitlines()[1:]:
    f = line.split()
    if f[3] == "0A" and int(f[7]) == victim_uid:  # LISTEN, owned by the victim
        tcp.append("tcp://127.0.0.1:%d" % int(f[1].split(":")[1], 16))
for line in open("/proc/net/unix").read().splitlines()[1:]:
    f = line.split()
    path = f[7] if len(f) > 7 else ""
    if path.startswith("/") and ("-ipc-" in path or "/nbc-" in path):
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
            ipc.append("ipc://" + path)
        except PermissionError:
            denied.append(path)
        except OSError:
            pass
        finally:
            probe.close()
for url in tcp + ipc:
    sub.connect(url)
print("READY", flush=True)
seen, count, deadline = [], 0, time.monotonic() + seconds
while time.monotonic() < deadline:
    if sub.poll(100):
        frames = sub.recv_multipart()
        count += 1
        if any(secret in frame for frame in frames):
            seen.append(b"".join(frames)[-200:].decode("utf-8", "replace"))
print(json.dumps({"tcp": tcp, "ipc": ipc, "denied": denied, "messages": count, "seen": seen}))
"""


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.skip(f"no user {name}: run scripts/ensure-hub.sh as root")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    if os.geteuid() != 0:
        pytest.skip("the hub test runs JupyterHub as root")
    if shutil.which("configurable-http-proxy") is None:
        pytest.skip("configurable-http-proxy is not installed")
    _user(VICTIM), _user(ATTACKER)
    folder = tmp_path_factory.mktemp("hub-outputs")
    folder.chmod(0o700)
    # The example's kernel settings as they are; only its warm pool (which starts a Podman
    # kernel container at server start, beside the point here) is left out.
    extra = (
        "c.Spawner.args = [a for a in c.Spawner.args if 'pool' not in a and 'warmup' not in a]\n"
        "c.Spawner.environment = {k: v for k, v in c.Spawner.environment.items()"
        " if not k.startswith('NBCONTAINERS_POOL')}\n"
    )
    running = start_hub(folder, (VICTIM,), extra)
    try:
        got = running.token_for(VICTIM, PASSWORD)
        assert got.status_code == 201, got.text
        running.tokens[VICTIM] = got.json()["token"]
        running.start_server(VICTIM)
        yield running
    finally:
        stop_hub(running)
        kill_user_processes(VICTIM)
        kill_user_processes(ATTACKER)


def _spy(secret: str) -> subprocess.Popen[str]:
    victim = _user(VICTIM)
    attacker = _user(ATTACKER)
    argv = ["runuser", "-u", attacker.pw_name, "--", "env", "-i", f"HOME={attacker.pw_dir}",
            "PATH=/usr/bin:/bin", sys.executable, "-c", SPY, str(victim.pw_uid), secret,
            str(LISTEN_SECONDS)]  # fmt: skip
    spy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    assert spy.stdout is not None
    line = spy.stdout.readline()
    assert line.strip() == "READY", (line, spy.stderr.read() if spy.stderr else "")
    return spy


def test_another_user_cannot_read_relayed_outputs(hub: Hub) -> None:
    started = hub.api(
        "POST", f"/user/{VICTIM}/api/kernels", hub.tokens[VICTIM], json={"name": "python3"}
    )
    assert started.status_code == 201, started.text
    kernel = started.json()["id"]
    # A container kernel of any kernelspec relays the same way; python3 needs no engine here.
    out, reply = execute(hub, VICTIM, kernel, "%load_ext nbcontainers\n%container use python3")
    assert reply["status"] == "ok", out
    secret = f"secret-{uuid.uuid4().hex}"
    spy = _spy(secret)
    try:
        time.sleep(1.0)  # ZeroMQ subscribers join late: give them a moment, then keep printing
        for _ in range(5):
            out, reply = execute(hub, VICTIM, kernel, f"print({secret!r})")
            assert reply["status"] == "ok", out
            assert out.strip() == secret  # A's own frontend still gets it
            time.sleep(0.5)
        stdout, stderr = spy.communicate(timeout=LISTEN_SECONDS + 30)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    report = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
    assert report, stderr
    seen = report["seen"]
    assert not seen, f"attacker saw the secret {len(seen)} times via {report['tcp']}: {seen[:2]}"
    assert not report["ipc"], f"attacker connected to: {report['ipc']}"
    # Not vacuous: B found A's kernel sockets (the notebook's and the relayed kernel's) and
    # was refused by the folders they live in.
    assert len(report["denied"]) >= 2, report
    out, reply = execute(hub, VICTIM, kernel, "%container stop")
    assert reply["status"] == "ok", out
    hub.api("DELETE", f"/user/{VICTIM}/api/kernels/{kernel}", hub.tokens[VICTIM])
