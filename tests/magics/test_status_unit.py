"""`%container status` formats what the runtime reports (``ContainerStats``), here the
in-memory runtime's."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.magics.status import (
    format_cpu,
    format_digest,
    format_duration,
    format_gpus,
    format_memory,
)
from nbcontainers.runtimes import ContainerStats, GPURequest

from .conftest import StandInRelay, loaded


def test_status_of_the_active_kernel(
    shell: InteractiveShell,
    container_kernel: StandInRelay,
    fake_runtime: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shell.run_line_magic("container", "status")
    ref = load_catalog()["python"].ref
    cid = container_kernel.container_id or ""
    assert (
        capsys.readouterr().out.splitlines()
        == [
            "kernel      python (active)",
            f"image       python: {ref}",
            f"digest      {fake_runtime.image_info(ref).id}",  # no registry digest: a local build
            f"container   {cid[:12]}  up 1m05s",
            "cpu         0.0%",
            "memory      1 MiB of 2.0 GiB",  # the fake uses 1 MiB; the kernel's limit is 2g
            "gpus        none",
        ]
    )


def test_status_of_an_idle_kernel_by_name(
    shell: InteractiveShell, container_kernel: StandInRelay, capsys: pytest.CaptureFixture[str]
) -> None:
    loaded(shell).state.active = None
    shell.run_line_magic("container", "status nbc-python")
    assert capsys.readouterr().out.startswith("kernel      python (idle)\n")


def test_status_of_a_kernel_without_a_container(shell: InteractiveShell) -> None:
    loaded(shell).state.relays["python3"] = StandInRelay("python3", object(), None)  # type: ignore[assignment]
    with pytest.raises(UsageError, match=r"^Kernel 'python3' does not run in a container\.$"):
        shell.run_line_magic("container", "status")


def test_what_the_engine_cannot_tell_shows_as_a_question_mark() -> None:
    unknown = ContainerStats(cpu_percent=None, memory_used=None, memory_limit=8 << 30)
    assert format_cpu(unknown) == "?" and format_memory(unknown) == "?"
    assert format_digest(None) == "?"
    busy = ContainerStats(cpu_percent=203.456, memory_used=300 << 20, memory_limit=8 << 30)
    assert format_cpu(busy) == "203.5%"  # of one CPU: two cores busy
    assert format_memory(busy) == "300 MiB of 8.0 GiB"


def test_gpus_and_uptime() -> None:
    assert format_gpus(None) == "none"
    assert format_gpus(GPURequest(count=-1)) == "all"
    assert format_gpus(GPURequest(count=2)) == "2"
    assert format_gpus(GPURequest(device_ids=("0", "3"))) == "devices 0,3"
    assert format_duration(59.9) == "0m59s"
    assert format_duration(3 * 3600 + 7 * 60 + 5) == "3h07m"
