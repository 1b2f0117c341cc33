"""hub setup's per-user systemd slices: what it writes under a temporary root where systemd
runs, that it follows the policy (idempotent, removed with the rule), and that it skips with a
clear line where systemd is not PID 1 (as in this project's containers); where the totals apply
(a process in its user's slice, the example hub's SystemdSpawner set-up) and where they do not."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from nbcontainers.hub import slices
from nbcontainers.hub.slices import DROP_IN, write_slices
from nbcontainers.kernels.policy import Policy

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


# -- where the totals apply -------------------------------------------------------------------

RULES = {"user_mem_limit": "64g", "user_cpus": 2.0, "user_tasks": 512}
V2_LOGIN = "0::/user.slice/user-1002.slice/session-4.scope\n"
V2_HUB = "0::/system.slice/jupyterhub.service\n"
V1_UNIT = "12:pids:/user.slice/user-1002.slice/jupyter-ada-singleuser.service\n1:name=systemd:/\n"


def test_the_slice_a_process_runs_in_is_read_from_its_cgroups() -> None:
    assert slices._slice_in(V2_LOGIN) == "user-1002.slice"
    assert slices._slice_in(V1_UNIT) == "user-1002.slice"
    assert slices._slice_in(V2_HUB) == ""
    assert slices._slice_in("0::/user.slice\n9:cpu:/\n") == ""  # the parent slice is nobody's
    assert slices.process_slice(999_999_999) == ""  # no such process: can't tell


def test_totals_are_reported_not_enforced_without_systemd(tmp_path: Path) -> None:
    policy = Policy(source="policy.json", **RULES)  # type: ignore[arg-type]
    note = slices.totals_note(policy, 1002, root=tmp_path)  # no run/systemd/system there
    assert "NOT enforced on this host" in note and "user_mem_limit=64g" in note
    assert "user_cpus=2.0" in note and "user_tasks=512" in note
    assert slices.totals_note(Policy(source="p"), 1002, root=tmp_path) == ""  # none asked


def test_a_server_outside_its_users_slice_is_told_its_totals_do_not_cover_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _root(tmp_path, RULES)  # a systemd host
    policy = Policy(source="policy.json", **RULES)  # type: ignore[arg-type]
    monkeypatch.setattr(slices, "process_slice", lambda pid="self": "")  # LocalProcessSpawner
    note = slices.totals_note(policy, 1002, root=root)
    assert "do NOT cover this server" in note and "user-1002.slice" in note
    assert "SystemdSpawner" in note and "use_user_slices" in note
    monkeypatch.setattr(slices, "process_slice", lambda pid="self": "user-1003.slice")
    assert "in user-1003.slice, not in user-1002.slice" in slices.totals_note(
        policy, 1002, root=root
    )
    monkeypatch.setattr(slices, "process_slice", lambda pid="self": "user-1002.slice")
    assert slices.totals_note(policy, 1002, root=root) == ""  # SystemdSpawner in the slice


@as_root
def test_setup_without_systemd_says_the_totals_are_not_enforced(tmp_path: Path) -> None:
    root = _root(tmp_path, RULES, systemd=False)
    lines: list[str] = []
    assert write_slices([ME.pw_name], lines.append, root) == []
    said = "Its per-user totals (user_mem_limit=64g, user_cpus=2.0, user_tasks=512) are NOT"
    assert said + " enforced here" in lines[0], lines


@as_root
def test_setup_with_systemd_says_what_the_slices_cover(tmp_path: Path) -> None:
    lines: list[str] = []
    write_slices([ME.pw_name], lines.append, _root(tmp_path, RULES))
    assert "servers LocalProcessSpawner starts run in the hub's cgroup" in lines[-1], lines


def test_the_example_hub_keeps_its_spawner_where_systemd_does_not_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(slices, "_systemd_runs", lambda root: False)
    config, said = Config(), []
    assert slices.use_user_slices(config, said.append) is False
    assert "spawner_class" not in config.JupyterHub and "per-user totals" in said[0]
    assert "are not enforced" in said[0]


def test_the_example_hub_starts_servers_in_the_users_slice_where_systemd_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(slices, "_systemd_runs", lambda root: True)
    monkeypatch.setattr(slices.importlib.util, "find_spec", lambda name: object())
    config, seen = Config(), []
    config.Spawner.pre_spawn_hook = seen.append  # the admin's own hook still runs
    assert slices.use_user_slices(config, print) is True
    assert config.JupyterHub.spawner_class == "systemdspawner.SystemdSpawner"
    assert config.SystemdSpawner.dynamic_users is False
    spawner = SimpleNamespace(
        user=SimpleNamespace(name=ME.pw_name), unit_extra_properties={"MemoryHigh": "1G"}
    )
    config.Spawner.pre_spawn_hook(spawner)
    assert spawner.unit_extra_properties == {
        "MemoryHigh": "1G",
        "Slice": f"user-{ME.pw_uid}.slice",
    }
    assert seen == [spawner]
