"""container ↔ host session: what a container kernel answers to `%container pull` is data, never
code, and names no host path.

The attacker is code in the container (an image from a registry runs it at start; here a cell
plants it, which is the same thing): it replaces the transfer helpers the notebook sends with
ones that answer every call with a pickle whose ``__reduce__`` writes a marker file on the host,
plant it (and links to host files) under every name the host may read, and name a path outside
the transfer folder. The host's own files and its session must come through untouched.

Seen on main before the fix: the marker appeared in the host's /tmp (the notebook's process
unpickled the container's bytes: code execution in the user's session), and the user's
``notes.pkl``/``notes.0`` outside the transfer folder were read and then deleted.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..drive import Frontend, notebook

pytestmark = pytest.mark.docker

# Runs in the container. It finds the transfer folder the notebook mounted (the same path
# inside), and answers *any* helper name the notebook asks for (old protocol or new) with an
# attack: it cannot know the names the host will read, so it writes its pickle under every
# name the host passed in, and into the folder under common names, plus links to host files.
ATTACKER = r'''
import json, os, pickle, sys, types
MARKER = {marker!r}
VICTIM = {victim!r}

class Boom:
    def __reduce__(self):
        return (exec, ("open(%r, 'w').write('code from the container ran here')" % MARKER,))

PAYLOAD = pickle.dumps(Boom(), protocol=5)
XFER = next(line.split()[1] for line in open('/proc/mounts') if 'nbc-xfer-' in line)
# Manifests in the notebook's own format: one says "pickle" (payload in .pkl), one points
# at an array file that is a link to the user's file.
AS_PICKLE = json.dumps(dict(version=1, pickle=0))
AS_LINK = json.dumps(dict(version=1, value=dict(__nbc__='ndarray', file=2)))

def _write(path, data):
    try:
        os.unlink(path)
    except OSError:
        pass
    with open(path, 'wb') as f:
        f.write(data)

def _plant(name, how):
    for suffix in ('', '.pkl', '.0', '.0.npy', '.1.npy', '.0.buf', '.npy'):
        _write(os.path.join(XFER, name + suffix), PAYLOAD)
    _write(os.path.join(XFER, name + '.json'), (AS_PICKLE if how == 'exec' else AS_LINK).encode())
    try:
        os.symlink(VICTIM + '.pkl', os.path.join(XFER, name + '.2.npy'))
    except OSError:
        pass

def attack(*args, **kwargs):
    how = args[0] if args else 'exec'
    for arg in list(args[1:]) + list(kwargs.values()):
        if isinstance(arg, str) and '/' not in arg and arg:
            _plant(arg, how)
    _plant('evil', how)
    if how == 'exec':
        return os.path.join(XFER, 'evil')  # a base whose .pkl is the payload
    return VICTIM  # a base outside the transfer folder: the user's own files

evil = types.ModuleType('_nbc_transfer')
evil.__getattr__ = lambda name: attack

class Modules(dict):
    """sys.modules that always answers the notebook's helper module with ours, whatever
    version check the notebook sends, and ignores its attempts to install its own."""
    def __getitem__(self, key):
        return evil if key == '_nbc_transfer' else dict.__getitem__(self, key)
    def get(self, key, default=None):
        return evil if key == '_nbc_transfer' else dict.get(self, key, default)
    def __contains__(self, key):
        return key == '_nbc_transfer' or dict.__contains__(self, key)
    def __setitem__(self, key, value):
        if key != '_nbc_transfer':
            dict.__setitem__(self, key, value)

sys.modules = Modules(sys.modules)
a = 'exec'
b = 'delete'
'''


@pytest.fixture
def attacked(python_image: str, tmp_path: Path) -> Iterator[tuple[Frontend, Path, Path]]:
    # On the host only: /tmp is the container's own, so nothing in it can write these.
    host_dir = Path(f"/tmp/nbc-pull-victim-{uuid.uuid4().hex[:12]}")
    host_dir.mkdir(mode=0o700)
    marker = host_dir / "pwned"
    victim = host_dir / "notes"
    (host_dir / "notes.pkl").write_bytes(b"the user's own notes, not a pickle")
    (host_dir / "notes.0").write_bytes(b"more of the user's data")
    try:
        with notebook(tmp_path) as frontend:
            frontend.text("%container use python")
            frontend.text(ATTACKER.format(marker=str(marker), victim=str(victim)))
            yield frontend, marker, host_dir
            frontend.text("%container local")
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)


def _refused(content: dict[str, Any], outputs: list[dict[str, Any]]) -> str:
    said = Frontend.error_text(outputs) + str(content.get("evalue", ""))
    assert content["status"] == "error", said
    assert content["ename"] == "UsageError", said
    assert "Traceback" not in said  # a message, not a crash
    return said


def test_a_pull_runs_no_code_from_the_container(
    attacked: tuple[Frontend, Path, Path],
) -> None:
    frontend, marker, _ = attacked
    content, outputs = frontend.run("%container pull a")
    assert not marker.exists(), marker.read_text()
    said = _refused(content, outputs)
    assert "nothing of it was run here" in said
    frontend.text("%container local")  # the notebook's own namespace got nothing
    assert frontend.text("print('a' in globals())", timeout=30).strip() == "False"


def test_a_pull_touches_no_file_outside_its_folder(attacked: tuple[Frontend, Path, Path]) -> None:
    frontend, marker, host_dir = attacked
    content, outputs = frontend.run("%container pull b")
    assert sorted(p.name for p in host_dir.iterdir()) == ["notes.0", "notes.pkl"]
    assert (host_dir / "notes.pkl").read_bytes() == b"the user's own notes, not a pickle"
    assert (host_dir / "notes.0").read_bytes() == b"more of the user's data"
    assert not marker.exists()
    _refused(content, outputs)


def test_both_at_once_change_nothing(attacked: tuple[Frontend, Path, Path]) -> None:
    frontend, marker, host_dir = attacked
    content, outputs = frontend.run("%container pull a b")
    assert not marker.exists()
    assert sorted(p.name for p in host_dir.iterdir()) == ["notes.0", "notes.pkl"]
    _refused(content, outputs)
    frontend.text("%container local")
    assert frontend.text("print('a' in globals(), 'b' in globals())").strip() == "False False"


def test_only_an_explicit_pickle_runs_it(attacked: tuple[Frontend, Path, Path]) -> None:
    """Not vacuous: the attacker's pickle is real, and --pickle (what its warning says) runs
    it; links and foreign paths stay refused even then."""
    frontend, marker, host_dir = attacked
    frontend.run("%container pull a --pickle")
    assert marker.read_text() == "code from the container ran here"
    marker.unlink()
    content, outputs = frontend.run("%container pull b --pickle")
    _refused(content, outputs)
    assert sorted(p.name for p in host_dir.iterdir()) == ["notes.0", "notes.pkl"]
