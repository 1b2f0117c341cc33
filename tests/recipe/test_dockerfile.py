"""The Dockerfile lines snapshots and serving images share, as literal text: the Debian system
layer in its three forms and the secret-mounted pip install step."""

from __future__ import annotations

from pathlib import Path

from nbcontainers.recipe.dockerfile import (
    debian_layer,
    pip_install_step,
    serving_build_layer,
    serving_runtime_layer,
    snapshot_system_layer,
)
from nbcontainers.recipe.environment import Package, Snapshot
from nbcontainers.serving.render import ExportPlan, render_dockerfile
from nbcontainers.snapshot import write_snapshot

RUN_APT = "RUN set -eux; export DEBIAN_FRONTEND=noninteractive; apt-get update; \\"


def test_snapshot_system_layer() -> None:
    assert snapshot_system_layer(["curl"]) == [
        RUN_APT,
        "    apt-get install -y --no-install-recommends ca-certificates python3 python3-pip "
        "curl; \\",
        "    rm -rf /var/lib/apt/lists/*; rm -f /usr/lib/python3*/EXTERNALLY-MANAGED; \\",
        "    useradd --uid 1000 --user-group --home-dir /home/nbc --shell /bin/bash nbc; \\",
        "    mkdir -p /home/nbc /opt/nbc/wheels; chown nbc:nbc /home/nbc; chmod 1777 /home/nbc",
    ]


def test_serving_layers_on_debian_python_and_on_a_slim_python_base() -> None:
    assert serving_build_layer(True) == [
        RUN_APT,
        "    apt-get install -y --no-install-recommends ca-certificates python3 python3-venv; \\",
        "    rm -rf /var/lib/apt/lists/*; \\",
        "    python3 -m venv /opt/venv",
    ]
    assert serving_build_layer(False)[1] == (
        "    apt-get install -y --no-install-recommends ca-certificates; \\"
    )
    runtime = [
        "    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log; \\",
        "    useradd --uid 1000 --user-group --no-create-home --home-dir /tmp \\",
        "        --shell /usr/sbin/nologin nbc",
    ]
    assert serving_runtime_layer(True) == [
        RUN_APT,
        "    apt-get install -y --no-install-recommends ca-certificates python3 tini; \\",
        *runtime,
    ]
    assert serving_runtime_layer(False) == [
        RUN_APT,
        "    apt-get install -y --no-install-recommends ca-certificates tini; \\",
        *runtime,
    ]


def test_a_layer_is_one_chain_that_fails_as_a_whole() -> None:
    lines = debian_layer(["a", "b"], ["one", "two; three"])
    assert lines[0] == RUN_APT and lines[-1] == "    two; three"
    assert all(line.endswith("; \\") for line in lines[1:-1])


PIP_STEP = [
    "RUN --mount=type=secret,id=pipconf --mount=type=secret,id=pipcert \\",
    "    --mount=type=bind,source=.nbc/wheels,target=/tmp/nbc-wheels \\",
    "    set -eu; \\",
    "    if [ ! -e /run/secrets/pipconf ] && [ -s /run/secrets/pipcert ]; then "
    "export PIP_CERT=/run/secrets/pipcert; fi; \\",
    "    PIP_CONFIG_FILE=/run/secrets/pipconf PIP_ROOT_USER_ACTION=ignore "
    "PIP_DISABLE_PIP_VERSION_CHECK=1 \\",
]


def test_pip_step_reads_secrets_as_mounts_and_the_extra_index_as_a_build_arg() -> None:
    assert pip_install_step("python3 -m pip", None) == [
        *PIP_STEP,
        "    python3 -m pip install --no-cache-dir --no-deps --find-links /tmp/nbc-wheels "
        "-r /opt/nbc/requirements.lock",
    ]
    assert pip_install_step("/opt/venv/bin/pip", "https://x/cpu", then="echo done") == [
        "ARG EXTRA_INDEX_URL=https://x/cpu",
        *PIP_STEP,
        "    /opt/venv/bin/pip install --no-cache-dir --no-deps "
        '${EXTRA_INDEX_URL:+--extra-index-url "$EXTRA_INDEX_URL"} '
        "--find-links /tmp/nbc-wheels -r /opt/nbc/requirements.lock; \\",
        "    echo done",
    ]


def test_both_dockerfiles_carry_the_same_pip_step(tmp_path: Path) -> None:
    snap = Snapshot(python="3.11.2", packages=(Package("numpy", "2.0.0", "index"),))
    snapshot = (write_snapshot(snap, tmp_path / "s", hashes={}) / "Dockerfile").read_text()
    plan = ExportPlan(
        name="m",
        image="m:1",
        meta={"kind": "sklearn", "format": "skops"},
        lock="",
        base="b",
        python="3.11",
    )
    export = render_dockerfile(plan, "0.1.0")
    block = "\n".join(PIP_STEP)
    assert block in snapshot and block in export
    assert "ENV PIP" not in snapshot + export  # secrets are mounts, never ENV
