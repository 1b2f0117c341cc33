"""The relay's kernel manager runs the kernelspec it is given, which no Jupyter path holds."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec

from nbcontainers.kernels.relay import Relay


class _Kernel:
    """Stands in for the notebook's ipykernel: the relay only logs through it here."""

    log: Any = None


def test_in_memory_kernelspec_is_the_one_started(tmp_path: Path) -> None:
    spec = KernelSpec(
        name="nbc-test-not-installed",
        display_name="in memory",
        language="python",
        argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    )
    relay = Relay("mem", spec, _Kernel(), cwd=str(tmp_path), execution_count=lambda: 1)
    assert relay.km.kernel_spec is spec
    relay.start(timeout=60)
    try:
        assert relay.alive
    finally:
        relay.stop(now=True)
    assert not relay.alive
