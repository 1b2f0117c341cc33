"""The JupyterLab extension's API under a real JupyterHub (PyPI) with two real Unix users, each
on their own rootless Podman: a user's token lists only that user's container kernels from
``GET /user/<name>/api/nbcontainers/kernels``; the other user's kernel ids and container ids
are 404 on the user's own server (GET, logs and DELETE, which stops nothing), and the other
user's token gets 403 on this user's server.

The hub runs examples/hub/jupyterhub_config.py with the server extension enabled the way the
wheel enables it: its ``jupyter_server_config.d/nbcontainers.json`` (from the checkout's
jupyter-config/, which the wheel installs under ``<prefix>/etc/jupyter``), found on the users'
Jupyter config path. An editable checkout has no such file under the venv's etc/jupyter.

Needs root and scripts/ensure-hub.sh (users, JupyterHub, the proxy); runs `hub setup` itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.hub.setup import run_setup

from .hubdrive import (
    USERS,
    Hub,
    execute,
    require_hub_host,
    sign_in,
    start_hub,
    tear_down,
    user_containers,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

WHEEL_CONFIG = Path(__file__).resolve().parents[2] / "jupyter-config"
LAB = "api/nbcontainers/kernels"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    require_hub_host()
    assert (WHEEL_CONFIG / "jupyter_server_config.d" / "nbcontainers.json").is_file()
    lines: list[str] = []
    setup = run_setup(users=USERS, images=["python"], fix=True, echo=lines.append)
    assert setup.exit_code == 0, "\n".join(lines)
    folder = tmp_path_factory.mktemp("hub-lab")
    folder.chmod(0o700)
    extra = f'c.Spawner.environment["JUPYTER_CONFIG_PATH"] = {str(WHEEL_CONFIG)!r}\n'
    running = start_hub(folder, USERS, extra)
    try:
        yield running
    finally:
        tear_down(running)


@pytest.fixture(scope="module")
def kernels(hub: Hub) -> dict[str, str]:
    """Each user's token (asked for with the user's password), server and nbc-python kernel."""
    sign_in(hub)
    found = {}
    for user in USERS:
        hub.start_server(user)
        started = hub.api(
            "POST", f"/user/{user}/api/kernels", hub.tokens[user], json={"name": "nbc-python"}
        )
        assert started.status_code == 201, f"{started.text}\n{hub.log_tail()}"
        found[user] = str(started.json()["id"])
    return found


def _listed(hub: Hub, user: str, token_of: str | None = None) -> Any:
    return hub.api("GET", f"/user/{user}/{LAB}", hub.tokens[token_of or user])


def _records(hub: Hub, user: str) -> list[dict[str, Any]]:
    got = _listed(hub, user)
    assert got.status_code == 200, f"{got.status_code} {got.text[:300]}\n{hub.log_tail()}"
    return list(got.json())


def test_each_users_token_lists_only_that_users_kernels(hub: Hub, kernels: dict[str, str]) -> None:
    for user, other in (USERS, USERS[::-1]):
        records = _records(hub, user)
        mine = [r for r in records if r["kernel_id"] == kernels[user]]
        assert len(mine) == 1, records
        assert (mine[0]["engine"], mine[0]["image"], mine[0]["state"]) == (
            "rootless Podman",
            "python",
            "running",
        )
        assert mine[0]["server_kernel"] is True
        # Nothing of the other user's: not their kernel, no container of their engine.
        assert kernels[other] not in {r["kernel_id"] for r in records}, records
        theirs = set(user_containers(other))
        assert theirs, f"{other}'s kernel container not found in {other}'s engine"
        assert not {r["container_id"] for r in records} & theirs, records
        # Everything listed is a container of the user's own engine.
        assert {r["container_id"] for r in records} <= set(user_containers(user)), records


def test_the_other_users_token_gets_403_on_this_users_server(
    hub: Hub, kernels: dict[str, str]
) -> None:
    a, b = USERS
    assert _listed(hub, a, token_of=b).status_code == 403
    for method, path in (
        ("GET", f"{LAB}/{kernels[a]}"),
        ("GET", f"{LAB}/{kernels[a]}/logs"),
        ("DELETE", f"{LAB}/{kernels[a]}"),
    ):
        got = hub.api(method, f"/user/{a}/{path}", hub.tokens[b])
        assert got.status_code == 403, (method, path, got.status_code, got.text[:200])
    assert hub.api("GET", f"/user/{a}/{LAB}").status_code == 403  # no token at all
    # A's kernel still runs and answers its owner.
    assert execute(hub, a, kernels[a], "print(6 * 7)")[0].strip() == "42"


def test_the_other_users_ids_are_404_on_ones_own_server(hub: Hub, kernels: dict[str, str]) -> None:
    a, b = USERS
    b_containers = user_containers(b)
    assert b_containers
    b_kernel = next(r for r in _records(hub, b) if r["kernel_id"] == kernels[b])
    for key in (kernels[b], b_kernel["container_id"], b_kernel["container_id"][:12]):
        for method, path in (
            ("GET", f"{LAB}/{key}"),
            ("GET", f"{LAB}/{key}/logs"),
            ("DELETE", f"{LAB}/{key}"),
        ):
            got = hub.api(method, f"/user/{a}/{path}", hub.tokens[a])
            assert got.status_code == 404, (method, path, got.status_code, got.text[:200])
    # B's kernel was stopped by none of it: its container is there and it answers.
    assert b_kernel["container_id"] in user_containers(b)
    assert execute(hub, b, kernels[b], "print(sum(range(10)))")[0].strip() == "45"


def test_a_user_stops_their_own_kernel_through_the_api(hub: Hub, kernels: dict[str, str]) -> None:
    a = USERS[0]
    started = hub.api("POST", f"/user/{a}/api/kernels", hub.tokens[a], json={"name": "nbc-python"})
    assert started.status_code == 201, started.text
    kernel = str(started.json()["id"])
    record = next(r for r in _records(hub, a) if r["kernel_id"] == kernel)
    assert record["container_id"] in user_containers(a)
    logs = hub.api("GET", f"/user/{a}/{LAB}/{kernel}/logs?tail=5", hub.tokens[a])
    assert logs.status_code == 200 and logs.json()["kernel_id"] == kernel, logs.text[:300]
    stopped = hub.api("DELETE", f"/user/{a}/{LAB}/{kernel}", hub.tokens[a])
    assert stopped.status_code == 204, stopped.text
    assert record["container_id"] not in user_containers(a)
    assert kernel not in {r["kernel_id"] for r in _records(hub, a)}
    assert hub.api("GET", f"/user/{a}/api/kernels/{kernel}", hub.tokens[a]).status_code == 404
