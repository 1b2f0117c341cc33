"""Container -> host session: the files a kernel leaves for a snapshot are its bytes, nothing else.

`%container snapshot` and `nbcontainers snapshot --kernel` have the kernel's own pip build
wheels (and with ``--wheels`` download every file) into a folder both sides can write, and the
host copies them into the snapshot folder, whose Dockerfile COPYs them into an image. A hostile
kernel (a compromised package in the image) that leaves a link there instead of a wheel would
have the user's process copy a file of the kernel's choosing (``~/.ssh/id_rsa``) into the
folder and on into an image layer; a FIFO would hang the snapshot for ever; and in a shared
temp folder another local user could leave a "wheel" first. Each is refused, by name, and
nothing is written.

The kernel here is a stand-in that does what a hostile kernel can do to the shared folder
(its pip is the only thing it runs for the snapshot): the attack is on the host side's reads.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.errors import SnapshotError
from nbcontainers.recipe.environment import Package, Snapshot
from nbcontainers.snapshot import live

# Plain data, not a key: detect-secrets would not flag it, so only the read itself protects it.
SECRET = b"host-only bytes the kernel must not choose to read 4711\n"
WHEEL = "mypkg-1.0-py3-none-any.whl"


def _snapshot_with_local_package(project: Path) -> Snapshot:
    return Snapshot(
        python="3.11.2",
        packages=(Package("mypkg", "1.0", "local", source=f"file://{project}"),),
        facts={},
    )


def _hostile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, leave: Any) -> None:
    """The kernel's capture finds one local install; its "pip wheel" runs ``leave(wheel_dir)``."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setattr(live, "capture_kernel", lambda ev: _snapshot_with_local_package(project))
    monkeypatch.setattr(live, "lookup_hashes", lambda snap, minimal=False: {})

    def call_in_kernel(evaluate: Any, source: str, function: str, *args: Any) -> Any:
        if function == "download":  # --wheels: the kernel's pip downloads nothing here
            return 0, ""
        assert function == "build_wheel"
        leave(Path(args[1]))
        return 0

    monkeypatch.setattr(live, "call_in_kernel", call_in_kernel)


def _no_secret_in(folder: Path) -> None:
    if folder.exists():
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert SECRET not in path.read_bytes(), f"{path} holds the host's secret"


def _evaluate(code: str, expression: str) -> Any:
    # The stand-in kernel is this process: it evaluates what the snapshot asks of it.
    exec(code, {})
    return eval(expression, {})


@pytest.fixture
def shared() -> Iterator[Path]:
    """The folder as ``_shared_dir`` makes it: in the temp folder, mode 1777 (the kernel may
    run as another uid), so another local user can reach it too."""
    wheel_dir = Path(tempfile.mkdtemp(prefix=".nbc-wheels-test-"))
    wheel_dir.chmod(0o1777)
    yield wheel_dir
    shutil.rmtree(wheel_dir, ignore_errors=True)


def test_a_link_left_for_a_wheel_is_refused_not_followed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared: Path
) -> None:
    secret = tmp_path / "id_rsa"
    secret.write_bytes(SECRET)
    _hostile(monkeypatch, tmp_path, lambda d: (d / WHEEL).symlink_to(secret))
    out = tmp_path / "snap"
    with pytest.raises(SnapshotError, match=r"mypkg-1\.0-py3-none-any\.whl.*link"):
        live.take_snapshot(_evaluate, out, wheel_dir=str(shared))
    _no_secret_in(out)
    assert not out.exists(), "nothing is written when the kernel's files are refused"


def test_a_fifo_left_for_a_wheel_is_refused_without_hanging(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared: Path
) -> None:
    _hostile(monkeypatch, tmp_path, lambda d: os.mkfifo(d / WHEEL))
    out = tmp_path / "snap"
    # A copy that opened the FIFO would block here for ever (pytest's timeout would fire).
    with pytest.raises(SnapshotError, match=r"not a plain file"):
        live.take_snapshot(_evaluate, out, wheel_dir=str(shared))
    assert not out.exists()


def test_a_link_in_the_download_folder_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared: Path
) -> None:
    """``--wheels``: the kernel downloads every file; a link among them is refused too, and
    a pre-made ``all`` folder (a link to one of the user's folders) is never written into."""
    secret = tmp_path / "id_rsa"
    secret.write_bytes(SECRET)
    wheel_dir = shared
    victim = tmp_path / "victim"
    victim.mkdir()
    (wheel_dir / "all").symlink_to(victim)
    _hostile(monkeypatch, tmp_path, lambda d: None)
    out = tmp_path / "snap"
    with pytest.raises(SnapshotError, match=r"all"):
        live.take_snapshot(_evaluate, out, wheel_dir=str(wheel_dir), vendor_all=True)
    assert list(victim.iterdir()) == [], "the snapshot wrote through a link it did not make"
    assert not out.exists()


def _other_user() -> pwd.struct_passwd | None:
    for name in ("nbc-hub-b", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="planting a file as another user needs root")
def test_a_wheel_planted_by_another_user_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared: Path
) -> None:
    """In the shared temp folder (mode 1777) another local user can leave a file whose name
    the snapshot would take for the kernel's wheel: only the kernel's (or our own) files are
    taken."""
    other = _other_user()
    assert other is not None, "no second user to play the attacker"
    wheel_dir = shared

    def planted(d: Path) -> None:
        # Another user's file, made with that user's own rights (runuser), as it would be.
        subprocess.run(
            ["runuser", "-u", other.pw_name, "--", "sh", "-c", f"printf x > {d / WHEEL}"],
            check=True,
        )

    _hostile(monkeypatch, tmp_path, planted)
    out = tmp_path / "snap"
    with pytest.raises(SnapshotError, match=rf"belongs to uid {other.pw_uid}"):
        live.take_snapshot(_evaluate, out, wheel_dir=str(wheel_dir))
    assert not out.exists()


def test_the_kernels_own_wheel_is_taken(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared: Path
) -> None:
    """The check refuses the attacks, not the snapshot: a real file the kernel wrote is
    vendored, and the shared folder holds nothing of it afterwards."""
    wheel_dir = shared
    _hostile(monkeypatch, tmp_path, lambda d: (d / WHEEL).write_bytes(b"PK wheel bytes"))
    out = tmp_path / "snap"
    written, _ = live.take_snapshot(_evaluate, out, wheel_dir=str(wheel_dir))
    assert (written / "wheels" / WHEEL).read_bytes() == b"PK wheel bytes"
    assert not (wheel_dir / WHEEL).exists()
