"""Faults a hub lives through, on a real user's rootless Podman (the test user of
tests/conftest.py, driven as that user's Jupyter server would be):

- the user's engine dies with everything it ran (a reboot, the OOM killer, an admin ending the
  user's processes): the next kernel start clears what was left (an exited network holder with
  an exited kernel joined to it) and succeeds, instead of the engine's raw "has dependent
  containers" error on every start until someone runs ``nbcontainers gc``;
- the user's engine exits after its idle timeout, and the next kernel start, in the same
  server process, starts it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.kernels.netns import holder_name
from nbcontainers.labels import OWNER

from ..hub.hubdrive import engine_services, kill_user_engine, kill_user_processes, podman_as
from ..kernels.podman_user import as_user, user_folder

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]
PROBE = Path(__file__).parents[1] / "kernels" / "podman_probe.py"


@pytest.fixture
def workspace(podman_runtime: Any) -> Iterator[tuple[pwd.struct_passwd, Path, Path]]:
    """(the test user, a folder of theirs, the Jupyter data folder with the nbc-* kernelspecs);
    afterwards every container of this user's that a test left is removed."""
    from .. import conftest

    user = pwd.getpwnam(conftest.PODMAN_USER)
    if podman_runtime.image_info(load_catalog()["python"].ref) is None:
        pytest.fail(f"the python image is not in {user.pw_name}'s store: scripts/ensure-podman.sh")
    before = {s.id for s in podman_runtime.list({OWNER: user.pw_name})}
    work, jupyter_path = user_folder(user, "nbc-heal")
    try:
        yield user, work, jupyter_path
    finally:
        shutil.rmtree(work, ignore_errors=True)
        _engine_back(user)  # the fixture's engine for the tests after this one
        left = [s for s in podman_runtime.list({OWNER: user.pw_name}) if s.id not in before]
        left.sort(key=lambda s: s.name == holder_name(user.pw_name))  # joined ones first
        for state in left:
            podman_runtime.remove(state.id)


def _probe(user: pwd.struct_passwd, work: Path, jupyter: Path, mode: str, **env: str) -> Any:
    done = subprocess.run(
        as_user(user, sys.executable, str(PROBE), mode, str(work), JUPYTER_PATH=str(jupyter),
                NBCONTAINERS_CONFIG_DIR=str(work / "config"), **env),
        capture_output=True, text=True, timeout=400, cwd=str(work), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _engine_back(user: pwd.struct_passwd) -> None:
    """The user's engine answering again (on demand, as nbcontainers starts it)."""
    code = "from nbcontainers.runtimes.podman.runtime import PodmanRuntime; PodmanRuntime().ping()"
    done = subprocess.run(
        as_user(user, sys.executable, "-c", code), capture_output=True, text=True, timeout=180,
        cwd="/", check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("kill", [kill_user_processes, kill_user_engine], ids=["term", "kill"])
def test_a_kernel_starts_after_the_users_engine_died_with_its_containers(
    podman_runtime: Any, workspace: Any, kill: Callable[[str], object]
) -> None:
    user, work, jupyter = workspace
    left = _probe(user, work, jupyter, "leave")["container"]
    holder = podman_runtime.state(holder_name(user.pw_name))
    assert holder is not None and holder.status == "running"
    # The engine dies with all it ran: its service, the pause process (catatonit -P), conmon,
    # the kernel and the holder. "term": as an admin ending the user's processes (SIGTERM,
    # then SIGKILL): conmon marks the containers exited; unchanged code then failed every start
    # with "has dependent containers". "kill": all at once by SIGKILL, as the OOM killer does:
    # the containers stay "running" in podman's database with nothing to join, and unchanged
    # code failed every podman call ("invalid internal status ... podman system migrate").
    kill(user.pw_name)
    _engine_back(user)
    assert podman_runtime.state(left).status != "running"
    assert podman_runtime.state(holder.id).status != "running"
    seen = _probe(user, work, jupyter, "start")
    print(f"start after the engine died: {seen}")
    assert "error" not in seen, seen["error"]  # unchanged code: "has dependent containers"
    assert (seen["status"], seen["out"].strip()) == ("ok", "42")
    # What the dead engine left is gone; only the new holder remains, running.
    assert podman_runtime.state(left) is None and podman_runtime.state(holder.id) is None
    mine = podman_runtime.list({OWNER: user.pw_name})
    assert [(s.name, s.status) for s in mine] == [(holder_name(user.pw_name), "running")]


def _drop_storage_record(user: pwd.struct_passwd, container_id: str) -> Path:
    """Delete ``container_id`` from the user's storage while its engine is down, keeping it in
    Podman's database: what an engine killed between the two halves of a removal leaves."""
    for path in Path(user.pw_dir, ".local/share/containers/storage").glob("*-containers/*.json"):
        records = json.loads(path.read_text())
        kept = [r for r in records if r.get("id") != container_id]
        if len(kept) < len(records):
            path.write_text(json.dumps(kept))  # in place: the file stays the user's
            return path
    raise AssertionError(f"{container_id[:12]} is in none of {user.pw_name}'s storage records")


def test_a_kernel_starts_when_a_containers_storage_is_gone_but_its_record_is_not(
    podman_runtime: Any, workspace: Any
) -> None:
    user, work, jupyter = workspace
    _probe(user, work, jupyter, "leave")
    holder = podman_runtime.state(holder_name(user.pw_name))
    assert holder is not None and holder.status == "running"
    kill_user_processes(user.pw_name)
    _drop_storage_record(user, holder.id)
    _engine_back(user)
    # The state CI met: Podman fails every list and every inspect of that record. Unchanged
    # code: each kernel start of the user a 500 ("getting container from store …: container
    # not known"), for good.
    broken = podman_as(user.pw_name, "inspect", holder.id, check=False)
    assert "container not known" in broken, broken
    seen = _probe(user, work, jupyter, "start")
    print(f"start with a holder whose storage is gone: {seen}")
    assert "error" not in seen, seen["error"]
    assert (seen["status"], seen["out"].strip()) == ("ok", "42")
    assert podman_runtime.state(holder.id) is None  # the broken record is gone
    mine = podman_runtime.list({OWNER: user.pw_name})
    assert [(s.name, s.status) for s in mine] == [(holder_name(user.pw_name), "running")]


def test_the_users_engine_exits_when_idle_and_comes_back_for_the_next_kernel(
    podman_runtime: Any, workspace: Any
) -> None:
    user, work, jupyter = workspace
    for pid in engine_services(user.pw_name):  # the next start is the one that starts it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while engine_services(user.pw_name) and time.monotonic() < deadline:
        time.sleep(0.1)
    seen = _probe(user, work, jupyter, "idle", NBCONTAINERS_PODMAN_IDLE="3")
    print(f"idle engine: {seen}")
    assert seen["first"].get("status") == "ok", seen
    assert seen["engine"], "no engine ran for the first kernel"
    # Unchanged code: --time=0, so the engine never left (gone_after_s is None).
    assert seen["gone_after_s"] is not None and seen["gone_after_s"] < 30, seen
    assert seen["again"].get("status") == "ok", seen["again"]  # brought back on demand
    assert seen["engine_again"] and seen["engine_again"] != seen["engine"]
