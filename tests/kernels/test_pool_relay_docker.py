"""`%container use` with nbclient on a real engine: the relay waits for the container's idle
while the local kernel sends its reply, and no output of any cell is lost or misplaced; with
a pool the notebook's container kernel and its restarts come from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..drive import executed

pytestmark = pytest.mark.docker

CELLS = 25


def test_every_output_of_every_relayed_cell_reaches_nbclient(
    python_image: str, tmp_path: Path
) -> None:
    cells = [
        "%load_ext nbcontainers",  # ...which warms python's pool (NBCONTAINERS_POOL_WARM)
        "import time\nfrom nbcontainers.kernels.pool import kernel_pool\n"
        "deadline = time.monotonic() + 60\n"
        "while kernel_pool().idle().get('python', 0) < 1:\n"
        "    assert time.monotonic() < deadline\n"
        "    time.sleep(0.05)",
        "%container use python",
    ]
    # Each cell ends printing, displaying and with a value: the last things the container
    # sends arrive after its reply, which is when a cell used to be over.
    cells += [
        f"import sys\nprint('line', {i})\nsys.stdout.write('tail {i}')\n"
        f"display({{'text/plain': 'shown {i}'}}, raw=True)\n{i} * 2"
        for i in range(CELLS)
    ]
    cells += [
        "%container local",
        # The first use took the member the extension's warming made.
        "import gc\n"
        "relay, = [o for o in gc.get_objects() if type(o).__name__ == 'Relay']\n"
        "print(relay.km.provisioner._pooled is not None)\n"
        "del relay",
        "from nbcontainers.kernels.pool import kernel_pool\n"
        "assert kernel_pool().wait_ready(1, timeout=60)",
        "%container list",
        "%container restart",
        # The restart took the pooled container: this reads the notebook's relay.
        "import gc\n"
        "relay, = [o for o in gc.get_objects() if type(o).__name__ == 'Relay']\n"
        "print(relay.km.provisioner._pooled is not None)",
        "%container use python",
        "import os\nprint(os.getcwd())",
        "%container stop",
    ]
    env = {"NBCONTAINERS_POOL_SIZE": "1", "NBCONTAINERS_POOL_WARM": "python"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        nb = executed(cells, tmp_path, timeout=120)
    assert "Cells now run in container kernel 'python'" in nb.cells[2].outputs[0]["text"]
    for i, cell in enumerate(nb.cells[3 : 3 + CELLS]):
        text = "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")
        assert text == f"line {i}\ntail {i}", cell.outputs
        shown = [o for o in cell.outputs if o["output_type"] == "display_data"]
        assert [o["data"]["text/plain"] for o in shown] == [f"shown {i}"]
        results = [o for o in cell.outputs if o["output_type"] == "execute_result"]
        assert [r["data"]["text/plain"] for r in results] == [str(i * 2)]
        assert results[0]["execution_count"] == cell.execution_count
    assert nb.cells[4 + CELLS].outputs[0]["text"].strip() == "True"  # the first use: pooled
    listed = nb.cells[6 + CELLS].outputs[0]["text"]
    assert "warm pool: python 1 idle" in listed, listed  # refilled behind it
    assert nb.cells[8 + CELLS].outputs[0]["text"].strip() == "True"
    assert nb.cells[-2].outputs[0]["text"].strip() == str(tmp_path)
