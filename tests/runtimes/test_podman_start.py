"""Starting a user's rootless Podman on demand: what is missing is named with its fix, within
seconds, never a hang. (The real start, as a real user, is in the contract suite's fixture.)"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.errors import ConfigError, EngineUnavailable
from nbcontainers.runtimes.podman import runtime as podman
from nbcontainers.runtimes.podman import service as podman_service


def test_missing_podman_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podman.shutil, "which", lambda name: None)
    with pytest.raises(EngineUnavailable, match=r"apt-get install podman uidmap slirp4netns"):
        podman.ensure_service(Path("/nonexistent/podman.sock"))


def test_a_user_without_a_subuid_range_gets_the_usermod_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(podman.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(podman.os, "getuid", lambda: 4242)
    monkeypatch.setattr(podman_service.getpass, "getuser", lambda: "ada")
    (tmp_path / "subuid").write_text("bob:100000:65536\n")
    (tmp_path / "subgid").write_text("bob:100000:65536\ncarol:165536:65536\n")
    monkeypatch.setattr(podman_service, "SUBID_FILES", (tmp_path / "subuid", tmp_path / "subgid"))
    # A free range: above bob's and carol's, so the line runs as printed.
    line = r"sudo usermod --add-subuids 231072-296607 --add-subgids 231072-296607 ada"
    with pytest.raises(EngineUnavailable, match=line + r".*hub setup --fix"):
        podman.ensure_service(Path("/nonexistent/podman.sock"))


def test_an_engine_that_dies_at_start_is_reported_with_its_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "podman"
    broken.write_text("#!/bin/sh\necho 'Error: cannot set up namespace: boom' >&2\nexit 125\n")
    broken.chmod(0o755)
    monkeypatch.setattr(
        podman.shutil, "which", lambda name: str(broken) if name == "podman" else "/bin/true"
    )
    monkeypatch.setattr(podman_service, "_has_subuid_range", lambda user, uid: True)
    sock = tmp_path / "run" / "podman" / "podman.sock"
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match=r"did not start(.|\n)*cannot set up namespace"):
        podman.ensure_service(sock, wait=10)
    assert time.monotonic() - started < 5  # it died: no waiting out the whole timeout
    assert sock.parent.stat().st_mode & 0o777 == 0o700


def test_the_socket_lives_in_the_users_private_runtime_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    assert podman.runtime_dir() == run
    assert podman.user_socket() == run / "podman" / "podman.sock"
    assert podman.PodmanRuntime().endpoint == f"unix://{run}/podman/podman.sock"


def test_a_planted_runtime_folder_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    planted = tmp_path / "run"
    planted.mkdir(mode=0o700)  # made by this test's user: someone else's for uid 987654
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(planted))
    monkeypatch.setattr(podman.os, "getuid", lambda: 987654)
    with pytest.raises(ConfigError, match="not to you"):
        podman.PodmanRuntime()


def test_the_engine_exits_after_its_idle_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = tmp_path / "argv"
    fake = tmp_path / "podman"
    fake.write_text(f'#!/bin/sh\necho "$@" > {seen}\nexit 125\n')
    fake.chmod(0o755)
    monkeypatch.setattr(
        podman.shutil, "which", lambda name: str(fake) if name == "podman" else "/bin/true"
    )
    monkeypatch.setattr(podman_service, "_has_subuid_range", lambda user, uid: True)
    sock = tmp_path / "run" / "podman" / "podman.sock"
    for value, flag in (("", "--time=600"), ("30", "--time=30"), ("0", "--time=0")):
        monkeypatch.setenv("NBCONTAINERS_PODMAN_IDLE", value)
        with pytest.raises(EngineUnavailable):
            podman.ensure_service(sock, wait=5)
        assert seen.read_text().split()[:3] == ["system", "service", flag]


@pytest.mark.parametrize("value", ["ten", "-5", "1.5", "10m"])
def test_a_bad_idle_timeout_is_named_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("NBCONTAINERS_PODMAN_IDLE", value)
    with pytest.raises(ConfigError, match=r"NBCONTAINERS_PODMAN_IDLE=.*whole number of seconds"):
        podman.idle_timeout()


def test_every_call_starts_the_engine_again_once_it_has_gone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A server keeps one runtime for good: after the engine's idle exit, its next kernel start,
    # pool fill or gc must bring the engine back, not fail on the client made before.
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    started: list[Path] = []
    monkeypatch.setattr(podman, "ensure_service", lambda path, wait=0: started.append(path))
    runtime = podman.PodmanRuntime()
    runtime._client = type("Client", (), {"api": "the-api"})()
    assert runtime.api == "the-api" and runtime.api == "the-api"
    assert started == [run / "podman" / "podman.sock"] * 2
    given = podman.PodmanRuntime(base_url="unix:///elsewhere.sock")  # someone else's engine
    given._client = type("Client", (), {"api": "theirs"})()
    assert given.api == "theirs" and len(started) == 2  # never started by us


def test_the_engine_does_not_keep_the_callers_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Started in a notebook's folder that is deleted later, conmon fails every container start.
    seen = tmp_path / "cwd"
    fake = tmp_path / "podman"
    fake.write_text(f"#!/bin/sh\npwd > {seen}\nexit 125\n")
    fake.chmod(0o755)
    monkeypatch.setattr(
        podman.shutil, "which", lambda name: str(fake) if name == "podman" else "/bin/true"
    )
    monkeypatch.setattr(podman_service, "_has_subuid_range", lambda user, uid: True)
    caller = tmp_path / "notebooks"
    caller.mkdir()
    monkeypatch.chdir(caller)
    with pytest.raises(EngineUnavailable):
        podman.ensure_service(tmp_path / "run" / "podman" / "podman.sock", wait=10)
    assert seen.read_text().strip() == "/"


def test_an_engine_killed_with_its_containers_is_reset_as_after_a_reboot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Its pause process and the conmons of the containers it calls running were killed: podman
    # refuses every call (migrate too) until its state is reset, as a reboot would.
    calls = tmp_path / "calls"
    fake = tmp_path / "podman"
    fake.write_text(
        f'#!/bin/sh\necho "$1 $2" >> {calls}\n'
        "echo 'level=error msg=\"invalid internal status, try resetting the pause process with "
        '\\"/usr/bin/podman system migrate\\": cannot re-exec process to join the existing user '
        "namespace\"' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(
        podman.shutil, "which", lambda name: str(fake) if name == "podman" else "/bin/true"
    )
    monkeypatch.setattr(podman_service, "_has_subuid_range", lambda user, uid: True)
    run = tmp_path / "run"
    (run / "libpod" / "tmp").mkdir(parents=True)
    for name in ("alive", "pause.pid", "alive.lck"):
        (run / "libpod" / "tmp" / name).write_text("")
    sock = run / "podman" / "podman.sock"
    monkeypatch.setattr(
        podman_service, "_rootless_processes", lambda: ["4242:python"]
    )  # a container lives
    with pytest.raises(EngineUnavailable, match=r"not reset, still running: 4242:python"):
        podman.ensure_service(sock, wait=5)
    assert (run / "libpod" / "tmp" / "alive").exists()  # never reset under a live container
    # Where podman first ran without a runtime folder, it keeps its state under $TMPDIR.
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    fallback = tmp_path / "tmp" / f"podman-run-{os.getuid()}" / "libpod" / "tmp"
    fallback.mkdir(parents=True)
    (fallback / "alive").write_text("")
    (fallback / "pause.pid").write_text("4242")
    monkeypatch.setattr(podman_service, "_rootless_processes", lambda: [])  # nothing of it survives
    with pytest.raises(EngineUnavailable, match="its state reset as after a reboot"):
        podman.ensure_service(sock, wait=5)
    assert calls.read_text().splitlines() == ["system service"] * 3
    assert sorted(p.name for p in (run / "libpod" / "tmp").iterdir()) == ["alive.lck"]
    assert not list(fallback.iterdir())


BROKEN = "1d04" * 16
GONE = f'getting container from store "{BROKEN}": container not known'
JOINED = "ab12" * 16


class _Engine:
    """What DockerRuntime's list, state and remove answer, in order, for PodmanRuntime above."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, **answers: list[object]) -> None:
        from nbcontainers.runtimes.docker.runtime import DockerRuntime

        self.answers = answers
        self.removed: list[str] = []
        for name in ("list", "state"):
            monkeypatch.setattr(DockerRuntime, name, self._answering(name))
        monkeypatch.setattr(DockerRuntime, "remove", self._remove)
        monkeypatch.setattr(podman, "BROKEN_SETTLE", 0.0)

    def _answering(self, name: str) -> Any:
        def answer(runtime: object, arg: object) -> object:
            got = self.answers[name].pop(0)
            if isinstance(got, Exception):
                raise got
            return got

        return answer

    def _remove(self, container_id: str) -> None:  # bound here: the runtime is not passed
        got = self.answers["remove"].pop(0) if self.answers.get("remove") else None
        if isinstance(got, Exception):
            raise got
        self.removed.append(container_id)


def _state(cid: str, status: str) -> Any:
    from nbcontainers.runtimes.base import ContainerState

    return ContainerState(
        id=cid, name=f"nbc-{cid[:4]}", image="i", status=status, exit_code=None,
        oom_killed=False, labels={},
    )  # fmt: skip


def test_a_container_vanishing_while_podman_lists_is_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nbcontainers.errors import RuntimeFailure

    engine = _Engine(
        monkeypatch,
        list=[RuntimeFailure(f"list containers: {GONE}"), ["listed"]],
        state=[None],  # gone a moment later: a removal that was in flight
    )
    runtime = podman.PodmanRuntime(base_url="unix:///elsewhere.sock")
    assert runtime.list({}) == ["listed"]
    assert engine.removed == []  # nothing to remove: it was already going
    engine.answers["list"] = [RuntimeFailure("list containers: permission denied")]
    with pytest.raises(RuntimeFailure, match="permission denied"):  # anything else: at once
        runtime.list({})


def test_a_record_whose_storage_is_gone_is_removed_with_the_ended_ones_joined_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nbcontainers.errors import RuntimeFailure

    dependents = RuntimeFailure(
        f"remove container {BROKEN[:12]}: container {BROKEN} has dependent containers which "
        f"must be removed before it: {JOINED}: container already exists"
    )
    engine = _Engine(
        monkeypatch,
        # The holder's inspect fails, still so a moment later; its joined kernel has exited.
        state=[
            RuntimeFailure(f"inspect: {GONE}"),
            RuntimeFailure(f"inspect: {GONE}"),
            _state(JOINED, "exited"),
            None,
        ],
        remove=[dependents, None, None],
    )
    runtime = podman.PodmanRuntime(base_url="unix:///elsewhere.sock")
    assert runtime.state("nbc-netns-ada") is None
    assert engine.removed == [JOINED, BROKEN]


def test_a_record_whose_storage_is_gone_with_a_running_container_joined_says_what_to_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nbcontainers.errors import RuntimeFailure

    dependents = RuntimeFailure(
        f"container {BROKEN} has dependent containers which must be removed before it: "
        f"{JOINED}: container already exists"
    )
    engine = _Engine(
        monkeypatch,
        list=[RuntimeFailure(f"list containers: {GONE}")],
        state=[RuntimeFailure(f"inspect: {GONE}"), _state(JOINED, "running")],
        remove=[dependents],
    )
    runtime = podman.PodmanRuntime(base_url="unix:///elsewhere.sock")
    with pytest.raises(RuntimeFailure, match=r"running containers are joined to it: nbc-ab12\."):
        runtime.list({})
    assert engine.removed == []  # a running kernel is never touched


NO_PASSWD_UID = 48213  # no passwd entry on this host (asserted where it matters)


def _no_name(monkeypatch: pytest.MonkeyPatch, subuid: str, tmp_path: Path) -> None:
    """A server process as a uid with no passwd entry and no user variable: what a container
    or a hub spawner run with a bare uid gives (``getpass.getuser()`` raises KeyError there)."""
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(podman.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(podman.os, "getuid", lambda: NO_PASSWD_UID)
    (tmp_path / "subuid").write_text(subuid)
    (tmp_path / "subgid").write_text(subuid)
    monkeypatch.setattr(podman_service, "SUBID_FILES", (tmp_path / "subuid", tmp_path / "subgid"))


def test_a_uid_without_a_passwd_entry_starts_its_engine_by_uid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import pwd

    with pytest.raises(KeyError):
        pwd.getpwuid(NO_PASSWD_UID)
    # /etc/subuid may name a user by uid: newuidmap accepts that, and so does the check.
    _no_name(monkeypatch, f"{NO_PASSWD_UID}:100000:65536\n", tmp_path)
    assert podman_service._preflight() == "/usr/bin/podman"


def test_a_uid_without_a_passwd_entry_nor_a_range_gets_the_subuid_lines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_name(monkeypatch, "bob:100000:65536\n", tmp_path)
    # `usermod` needs a login name this uid does not have: the lines to add are named instead.
    line = rf"{NO_PASSWD_UID}:165536:65536"
    with pytest.raises(EngineUnavailable, match=rf"uid {NO_PASSWD_UID} has no user name.*{line}"):
        podman.ensure_service(Path("/nonexistent/podman.sock"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as a uid with no passwd entry")
def test_a_real_process_with_no_passwd_entry_gets_a_message_not_a_keyerror() -> None:
    import subprocess
    import sys

    code = (
        "from nbcontainers.errors import EngineUnavailable\n"
        "from nbcontainers.runtimes.podman.service import _preflight\n"
        "try:\n    _preflight()\nexcept EngineUnavailable as exc:\n    print('MESSAGE', exc)\n"
    )
    done = subprocess.run(
        ["setpriv", f"--reuid={NO_PASSWD_UID}", f"--regid={NO_PASSWD_UID}", "--clear-groups",
         "env", "-i", "PATH=/usr/bin:/bin", "HOME=/nonexistent", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2], check=False,
    )  # fmt: skip
    assert "KeyError" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 0 and f"uid {NO_PASSWD_UID} has no user name" in done.stdout, (
        done.stdout + done.stderr
    )


def test_two_calls_finding_the_engine_gone_start_it_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A kernel start and the pool's refill find the engine dead together. Unchanged code: each
    # started one, and each took the other's fresh engine for a survivor of the dead one
    # ("not reset, still running: …podman …catatonit"), so the kernel start was a 500.
    import threading

    up = threading.Event()
    starts: list[str] = []

    def start(argv: list[str], path: Path, env: object, wait: float) -> None:
        starts.append(argv[1])
        time.sleep(0.3)  # an engine takes a moment to answer
        up.set()

    monkeypatch.setattr(podman_service, "_answers", lambda path: up.is_set())
    monkeypatch.setattr(podman_service, "_start_service", start)
    monkeypatch.setattr(podman_service, "_preflight", lambda: "/usr/bin/podman")
    sock = tmp_path / "run" / "podman" / "podman.sock"
    callers = [threading.Thread(target=podman.ensure_service, args=(sock,)) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(10)
    assert starts == ["system"]
