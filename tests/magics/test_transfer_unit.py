"""push/pull failures that change nothing, and the files variables move through."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbcontainers.magics.pickles import dump_to, load_from, remote_helpers, remove_files
from nbcontainers.magics.transfer import TRANSFER_MODULE, helpers_code

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
