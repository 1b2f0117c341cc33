from __future__ import annotations

from nbcontainers.errors import UnknownImage, did_you_mean


def test_did_you_mean_close_name() -> None:
    assert did_you_mean("pytorch-cpy", ["python", "pytorch-cpu", "pytorch-gpu"]).startswith(
        " Did you mean"
    )
    assert "'pytorch-cpu'" in did_you_mean("pytorch-cpy", ["python", "pytorch-cpu"])


def test_did_you_mean_substring() -> None:
    assert "'pytorch-cpu'" in did_you_mean("torch", ["python", "pytorch-cpu"])


def test_did_you_mean_nothing_close() -> None:
    assert did_you_mean("zzzz", ["python"]) == ""


def test_unknown_image_message_lists_known_and_fix() -> None:
    msg = str(UnknownImage("pyhton", ["python", "pytorch-cpu"]))
    assert "Unknown image 'pyhton'" in msg
    assert "Did you mean 'python'?" in msg
    assert "nbcontainers images list" in msg
