"""push/pull failures that change nothing, the files variables move through, and a pull that
takes data, never code, from a container that is not trusted (unit level; the real container
attack is tests/security/test_pull_untrusted_docker.py)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbcontainers.magics.pickles import dump_to, load_from, remote_helpers, remove_files
from nbcontainers.magics.pulldata import BadTransfer, decode_from, new_base, remove_base
from nbcontainers.magics.transfer import TRANSFER_MODULE, helpers_code
from nbcontainers.relay.kernel import remote_error

from .conftest import StandInRelay, loaded


def test_push_of_a_missing_variable_pushes_nothing(
    shell: InteractiveShell, container_kernel: StandInRelay
) -> None:
    shell.user_ns["nbc_test_a"] = 1
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("container", "push nbc_test_a nbc_test_b nbc_test_c")
    assert str(caught.value) == (
        "No variable named 'nbc_test_b', 'nbc_test_c' in the notebook; nothing was pushed."
    )


def test_push_of_what_cannot_be_pickled_leaves_no_files(
    shell: InteractiveShell, container_kernel: StandInRelay
) -> None:
    shell.user_ns["nbc_test_ok"] = b"x" * 10
    shell.user_ns["nbc_test_gen"] = (i for i in range(3))
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("container", "push nbc_test_ok nbc_test_gen")
    assert str(caught.value).startswith(
        "Cannot push 'nbc_test_gen': a builtins.generator can't be pickled ("
    )
    assert "Recreate it inside the container instead" in str(caught.value)
    assert os.listdir(loaded(shell).state.transfer_dir()) == []


def test_the_transfer_folder_goes_with_the_magics(_ipython: InteractiveShell) -> None:
    from nbcontainers.magics import load, unload

    load(_ipython)
    folder = Path(loaded(_ipython).state.transfer_dir())
    assert folder.is_dir()
    unload(_ipython)
    assert not folder.exists()


def test_out_of_band_buffers_round_trip(tmp_path: Path) -> None:
    pickle_buffer = pytest.importorskip("numpy").arange(1000.0)
    base = dump_to({"a": pickle_buffer, "b": [1, "two"]}, str(tmp_path))
    assert len(os.listdir(tmp_path)) == 2  # the pickle and one raw buffer
    back = load_from(base)
    assert back["b"] == [1, "two"] and (back["a"] == pickle_buffer).all()
    back["a"][0] = 5.0  # copy-on-write mapping: writable
    assert os.listdir(tmp_path) == []  # the reader deletes what it read


def test_remove_files_cleans_up_what_a_failed_load_left(tmp_path: Path) -> None:
    base = dump_to(bytearray(b"abc"), str(tmp_path))
    remove_files(base)
    assert os.listdir(tmp_path) == []


def test_the_helpers_run_in_a_kernel_without_nbcontainers(tmp_path: Path) -> None:
    namespace: dict[str, object] = {}
    exec(remote_helpers(), namespace)
    base = namespace["dump_to"]([1, 2], str(tmp_path))  # type: ignore[operator]
    assert namespace["load_from"](base) == [1, 2]  # type: ignore[operator]
    sys.modules.pop(TRANSFER_MODULE, None)
    try:
        scope: dict[str, object] = {}
        exec(helpers_code(), scope)
        exec(helpers_code(), scope)  # a second push defines nothing again
        assert TRANSFER_MODULE in sys.modules
        assert not [n for n in scope if n.startswith("__nbc") and n != "__builtins__"]
    finally:
        sys.modules.pop(TRANSFER_MODULE, None)


# -- pull: data only, from a container that is not trusted -----------------------------------


class ExecRelay(StandInRelay):
    """A container kernel in this process: run_internal executes in a namespace of its own
    (the container's globals), errors come back as the relay raises them."""

    def __init__(self) -> None:
        super().__init__("python", None, None)
        self.ns: dict[str, Any] = {}

    def run_internal(self, code: str, **_: Any) -> dict[str, Any]:
        try:
            exec(code, self.ns)
        except Exception as exc:
            raise remote_error(type(exc).__name__, str(exc), []) from None
        return {}


@pytest.fixture
def there(shell: InteractiveShell) -> Iterator[ExecRelay]:
    relay = ExecRelay()
    state = loaded(shell).state
    state.relays["python"] = relay  # type: ignore[assignment]
    state.active = "python"
    sys.modules.pop(TRANSFER_MODULE, None)
    yield relay
    sys.modules.pop(TRANSFER_MODULE, None)
    for name in [n for n in shell.user_ns if n.startswith("nbc_test_")]:
        del shell.user_ns[name]


def test_pull_brings_arrays_frames_and_plain_values_back_as_data(
    shell: InteractiveShell, there: ExecRelay
) -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    there.ns.update(
        nbc_test_arr=np.arange(10.0).reshape(2, 5),
        nbc_test_df=pd.DataFrame({"a": [1, 2], "b": ["x", None], "c": pd.Categorical(["u", "u"])}),
        nbc_test_plain={"k": [1, 2.5, None, True], 2: (b"\x00", {3}), "z": 1 + 2j},
    )
    shell.run_line_magic("container", "pull nbc_test_arr nbc_test_df nbc_test_plain")
    back = shell.user_ns
    assert np.array_equal(back["nbc_test_arr"], there.ns["nbc_test_arr"])
    back["nbc_test_arr"][0, 0] = 7.0  # writable (copy-on-write mapping of the file)
    pd.testing.assert_frame_equal(back["nbc_test_df"], there.ns["nbc_test_df"])
    assert back["nbc_test_plain"] == there.ns["nbc_test_plain"]
    assert os.listdir(loaded(shell).state.transfer_dir()) == []  # nothing left behind
    assert not [n for n in there.ns if n.startswith("__nbc_")]  # nor there


class Custom:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Custom)


def test_what_is_not_data_needs_pickle_and_says_what_that_risks(
    shell: InteractiveShell, there: ExecRelay
) -> None:
    there.ns.update(nbc_test_ok=1, nbc_test_obj=Custom())
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("container", "pull nbc_test_ok nbc_test_obj")
    said = str(caught.value)
    assert said.startswith("Cannot pull nbc_test_ok, nbc_test_obj: a ")
    assert "test_transfer_unit.Custom is not data that `%container pull` moves safely" in said
    assert "`%container pull NAME --pickle`" in said and "runs whatever code" in said
    assert "nbc_test_ok" not in shell.user_ns  # all or nothing
    assert os.listdir(loaded(shell).state.transfer_dir()) == []
    shell.run_line_magic("container", "pull nbc_test_ok nbc_test_obj --pickle")
    assert shell.user_ns["nbc_test_obj"] == Custom() and shell.user_ns["nbc_test_ok"] == 1


RAN: list[str] = []


def run_here(what: str) -> None:
    RAN.append(what)


class Boom:
    """Unpickling it calls run_here: what a container's pickle could make the notebook do."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (run_here, ("code from the container",))


def test_a_pickle_the_container_sends_unasked_is_refused_not_run(
    shell: InteractiveShell, there: ExecRelay
) -> None:
    RAN.clear()
    there.ns["nbc_test_x"] = 1
    # The container's helpers answer with a pickle whatever was asked.
    exec(helpers_code(), {})
    helpers = sys.modules[TRANSFER_MODULE]
    real = helpers.encode_to

    def evil(obj: Any, folder: str, base: str, allow_pickle: bool) -> str:
        return str(real(Boom(), folder, base, True))

    helpers.encode_to = evil  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="the container sent a pickle, and pickle was not"):
        shell.run_line_magic("container", "pull nbc_test_x")
    assert RAN == [] and "nbc_test_x" not in shell.user_ns
    assert os.listdir(loaded(shell).state.transfer_dir()) == []
    shell.run_line_magic("container", "pull nbc_test_x --pickle")  # what the flag risks
    assert RAN == ["code from the container"]


def test_links_fifos_and_foreign_names_are_never_followed(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    folder = tmp_path / "xfer"
    folder.mkdir(mode=0o700)
    secret = tmp_path / "secret.npy"
    np.save(secret, np.arange(3))
    base = new_base()
    (folder / f"{base}.json").write_text(
        json.dumps({"version": 1, "value": {"__nbc__": "ndarray", "file": 0}})
    )
    (folder / f"{base}.0.npy").symlink_to(secret)
    with pytest.raises(BadTransfer, match="can't be opened as a plain file"):
        decode_from(str(folder), base)
    os.unlink(folder / f"{base}.0.npy")
    os.mkfifo(folder / f"{base}.0.npy")
    with pytest.raises(BadTransfer, match="is not a plain file"):
        decode_from(str(folder), base)  # a FIFO would block a plain open() for ever
    (folder / f"{base}.json").unlink()
    (folder / f"{base}.json").symlink_to(secret)
    with pytest.raises(BadTransfer):
        decode_from(str(folder), base)
    remove_base(str(folder), base)
    assert os.listdir(folder) == [] and secret.exists()  # the links went, never their targets
    with pytest.raises(ValueError, match="not a transfer base name"):
        decode_from(str(folder), "../secret")


@pytest.mark.parametrize(
    "manifest",
    [
        b"\x80\x05not json",
        b'{"version": 1}',
        b'{"version": 2, "value": 1}',
        b'{"version": 1, "value": {"__nbc__": "ndarray", "file": "../../etc/passwd"}}',
        b'{"version": 1, "value": {"__nbc__": "ndarray", "file": -1}}',
        b'{"version": 1, "value": {"__nbc__": "os.system"}}',
        b'{"version": 1, "value": {"__nbc__": "dict", "items": [[[1], 2]]}}',
        b'{"version": 1, "value": {"__nbc__": "bytes", "b64": "not base64!"}}',
        b'{"version": 1, "value": {"__nbc__": "column", "dtype": "object", "items": 1}}',
        b"[" * 100_000,
    ],
)
def test_a_bad_manifest_is_a_bad_transfer(tmp_path: Path, manifest: bytes) -> None:
    base = new_base()
    (tmp_path / f"{base}.json").write_bytes(manifest)
    with pytest.raises(BadTransfer):
        decode_from(str(tmp_path), base)


def test_an_npy_of_objects_or_a_short_one_is_refused(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    base = new_base()
    (tmp_path / f"{base}.json").write_text(
        json.dumps({"version": 1, "value": {"__nbc__": "ndarray", "file": 0}})
    )
    np.save(tmp_path / f"{base}.0.npy", np.array([Custom()], dtype=object), allow_pickle=True)
    with pytest.raises(BadTransfer, match="holds Python objects"):
        decode_from(str(tmp_path), base)
    np.save(tmp_path / f"{base}.0.npy", np.arange(100))
    data = (tmp_path / f"{base}.0.npy").read_bytes()
    (tmp_path / f"{base}.0.npy").write_bytes(data[:-8])
    with pytest.raises(BadTransfer, match="shorter than its header says"):
        decode_from(str(tmp_path), base)


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary() | st.complex_numbers(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4)
    | st.tuples(inner, inner)
    | st.dictionaries(st.text() | st.integers() | st.none(), inner, max_size=4)
    | st.frozensets(st.integers() | st.text(), max_size=4),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(PLAIN)
def test_plain_values_round_trip(value: Any) -> None:
    namespace: dict[str, Any] = {}
    exec(remote_helpers(), namespace)
    with tempfile.TemporaryDirectory() as folder:
        base = new_base()
        assert namespace["encode_to"](value, folder, base, False) == "data"
        back = decode_from(folder, base)
        remove_base(folder, base)
        assert os.listdir(folder) == []
    assert back == value and type(back) is type(value)


def test_pull_takes_variable_names_only(shell: InteractiveShell, there: ExecRelay) -> None:
    with pytest.raises(UsageError, match=r"Not a variable name: 'a\]\+1'; nothing was pulled"):
        shell.run_line_magic("container", "pull ok a]+1")
