"""user ↔ user on one hub host: the shared image store exposes nothing to host users outside
the hub. A real image (the local Debian base, with ``su``, ``mount`` and ``/etc/shadow``) is
loaded into a real store with ``docker save | podman load``, then sealed as ``hub setup`` does.

On main, ``make_readable`` (``a+rX``) let every host user read the image's ``/etc/shadow`` and
run its setuid-root ``su``/``mount``, and loading widened the store's parent folders to 0755.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbcontainers.hub.seal import seal_store, unreachable_parents
from nbcontainers.hub.store import SharedStore
from nbcontainers.runtimes.docker.runtime import DockerRuntime

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

BASE = os.environ.get("NBC_PODMAN_IMAGE", "nbcontainers/base:bookworm")
REQUIRE = os.environ.get("NBCONTAINERS_REQUIRE_DOCKER") == "1"
NOBODY = 65534
GID = 4711  # a stand-in for the hub's group: no user on this host has it


def _as_nobody(*argv: str, group: int | None = None) -> subprocess.CompletedProcess[str]:
    ids = [f"--groups={group}"] if group is not None else ["--clear-groups"]
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", *ids, *argv],
        capture_output=True, text=True, timeout=120, cwd="/", stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin"}, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def store() -> Iterator[Path]:
    if os.geteuid() != 0 or not shutil.which("podman") or not shutil.which("docker"):
        if REQUIRE:
            pytest.fail("needs root, podman and docker")
        pytest.skip("needs root, podman and docker")
    if subprocess.run(["docker", "image", "inspect", BASE], capture_output=True).returncode:
        pytest.skip(f"{BASE} is not built (scripts/ensure-docker.sh)")
    # Under a folder every user may pass (not pytest's 0700 one), so only the store's own
    # modes stand between a host user and its files.
    top = Path(tempfile.mkdtemp(prefix="nbc-store-test.", dir="/var/tmp"))
    top.chmod(0o755)
    private = top / "admin-only"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    root = private / "storage"
    shared = SharedStore(root, "vfs", runroot=top / "run")
    try:
        shared.load_from(DockerRuntime(), BASE)
        yield root
    finally:
        shutil.rmtree(top)


def test_loading_widens_no_parent_folder(store: Path) -> None:
    mode = stat.S_IMODE(store.parent.stat().st_mode)
    assert mode == 0o700, f"{store.parent} was widened to {mode:04o}"
    assert unreachable_parents(store, GID) == [f"{store.parent} (0700)"]


@pytest.fixture(scope="module")
def sealed(store: Path) -> Iterator[Path]:
    done = seal_store(store, GID)
    assert done.setid_removed, "the base image has setuid programs (su, mount): none found"
    store.parent.chmod(0o755)  # the admin's choice, reported by hub setup; lets the test look in
    yield store
    store.parent.chmod(0o700)


def _shadows(store: Path) -> list[Path]:
    found = [p for p in store.rglob("etc/shadow") if p.is_file() and not p.is_symlink()]
    assert found, "the image has no /etc/shadow"
    return found


def test_a_host_user_outside_the_hub_reads_nothing(sealed: Path) -> None:
    for shadow in _shadows(sealed):
        read = _as_nobody("cat", str(shadow))
        assert read.returncode != 0 and "Permission denied" in read.stderr, read.stdout[:200]
    listing = _as_nobody("ls", str(sealed))
    assert listing.returncode != 0, listing.stdout


def test_a_hub_user_reads_what_their_engine_needs(sealed: Path) -> None:
    read = _as_nobody("cat", str(_shadows(sealed)[0]), group=GID)
    assert read.returncode == 0, read.stderr


def test_no_setuid_program_or_capability_is_left(sealed: Path) -> None:
    risky = []
    for dirpath, _dirs, files in os.walk(sealed):
        for name in files:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if not stat.S_ISREG(mode):
                continue
            if mode & (stat.S_ISUID | stat.S_ISGID):
                risky.append(f"{path} {stat.filemode(mode)}")
            if "security.capability" in os.listxattr(path, follow_symlinks=False):
                risky.append(f"{path}: file capabilities")
    assert not risky, risky[:5]
    su = [p for p in sealed.rglob("bin/su") if p.is_file()]
    assert su and all(not p.stat().st_mode & stat.S_ISUID for p in su)
