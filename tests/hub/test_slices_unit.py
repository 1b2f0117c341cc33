"""hub setup's per-user systemd slices: what it writes under a temporary root where systemd
runs, that it follows the policy (idempotent, removed with the rule), and that it skips with a
clear line where systemd is not PID 1 (as in this project's containers)."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from nbcontainers.hub.slices import DROP_IN, write_slices

ME = pwd.getpwuid(os.getuid())
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the policy file must belong to root")


def _root(tmp_path: Path, rules: dict[str, object], systemd: bool = True) -> Path:
    (tmp_path / "etc" / "nbcontainers").mkdir(parents=True, exist_ok=True)
    policy = tmp_path / "etc" / "nbcontainers" / "policy.json"
    policy.write_text(json.dumps(rules))
    policy.chmod(0o644)
    if systemd:
        (tmp_path / "run" / "systemd" / "system").mkdir(parents=True, exist_ok=True)
    return tmp_path


@as_root
def test_slices_get_the_policys_per_user_limits(tmp_path: Path) -> None:
    rules = {"user_mem_limit": "64g", "user_cpus": 1.5, "user_tasks": 4096, "max_cpus": 8}
    root = _root(tmp_path, rules)
    lines: list[str] = []
    changes = write_slices([ME.pw_name], lines.append, root)
    drop_in = root / "etc" / "systemd" / "system" / f"user-{ME.pw_uid}.slice.d" / DROP_IN
    assert changes == [f"wrote {drop_in}"], lines
    text = drop_in.read_text()
    assert "[Slice]\nMemoryMax=68719476736\nCPUQuota=150%\nTasksMax=4096\n" in text
    assert text.startswith("# Written by nbcontainers hub setup") and "max_cpus" not in text
    assert "MemoryMax=68719476736, CPUQuota=150%, TasksMax=4096" in lines[0]
    assert write_slices([ME.pw_name], lines.append, root) == []  # idempotent
    _root(tmp_path, {"max_cpus": 8})  # the admin drops the per-user rules: so does setup
    assert write_slices([ME.pw_name], lines.append, root) == [f"removed {drop_in}"]
    assert not drop_in.exists()


@as_root
def test_without_systemd_nothing_is_written_and_setup_says_so(tmp_path: Path) -> None:
    root = _root(tmp_path, {"user_mem_limit": "8g"}, systemd=False)
    lines: list[str] = []
    assert write_slices([ME.pw_name], lines.append, root) == []
    assert "skipped: systemd is not running here" in lines[0]
    assert "guardrails only" in lines[0]
    assert not (root / "etc" / "systemd").exists()
    if not Path("/run/systemd/system").is_dir():  # this machine: systemd is not PID 1
        lines.clear()
        assert write_slices([ME.pw_name], lines.append) == []
        init = Path("/proc/1/comm").read_text().strip()
        assert f"(PID 1 is {init})" in lines[0], lines
