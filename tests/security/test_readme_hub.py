"""The README's hub recipe is complete: on main it never installed the kernelspecs into the
hub's environment, so an admin who followed it got "No such kernel named nbc-python" as an HTTP
500 in every user's browser (examples/hub/README.md had the step; the README did not)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def hub_recipe() -> list[str]:
    section = README.read_text().split("## Deploying on JupyterHub", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the hub section lost its recipe"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_hub_recipe_installs_the_kernelspecs_before_the_hub_starts():
    steps = hub_recipe()
    install = [i for i, s in enumerate(steps) if s.startswith("nbcontainers kernelspec install")]
    hub = [i for i, s in enumerate(steps) if s.startswith("jupyterhub ")]
    assert install and hub and install[0] < hub[0], steps
    # The hub's users read the kernelspecs of the hub's environment, not root's ~/.local.
    assert "--sys-prefix" in steps[install[0]] or "--prefix" in steps[install[0]]


def test_hub_recipe_runs_setup_before_the_hub_starts():
    steps = hub_recipe()
    setup = [i for i, s in enumerate(steps) if s.startswith("nbcontainers hub setup")]
    hub = [i for i, s in enumerate(steps) if s.startswith("jupyterhub ")]
    assert setup and hub and setup[0] < hub[0], steps
