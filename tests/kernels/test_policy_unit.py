"""The admin's policy file: rules win over user and kernelspec settings, a broken rule names
itself and the file, and a policy anyone but root could have written stops kernel starts."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.errors import ConfigError
from nbcontainers.kernels import policy as policy_module
from nbcontainers.kernels.plan import LaunchConfig
from nbcontainers.kernels.policy import Policy, load_policy
from nbcontainers.kernels.policy_rules import apply_policy
from nbcontainers.kernels.provisioner import ContainerProvisioner
from nbcontainers.runtimes.base import GPURequest
from nbcontainers.runtimes.fake import FakeRuntime

CATALOG = load_catalog(include_user=False)


def _write(tmp_path: Path, rules: Any, mode: int = 0o644) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(rules))
    path.chmod(mode)
    return path


def _image(name: str) -> Any:
    """A catalog image by name; a made-up name is an image of the user's own."""
    if name in CATALOG:
        return CATALOG[name]
    return replace(CATALOG["python"], name=name, ref=f"me/{name}:1", user_defined=True)


def test_no_file_no_rules(tmp_path: Path) -> None:
    assert load_policy(tmp_path / "absent.json") == Policy()


def test_a_policy_others_can_write_stops_kernel_starts(tmp_path: Path) -> None:
    path = _write(tmp_path, {"max_cpus": 2}, mode=0o666)
    with pytest.raises(ConfigError, match=r"writable by root alone.*chmod 644"):
        load_policy(path)


def test_unknown_rules_and_bad_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Unknown rule 'max_cpu'.*Did you mean 'max_cpus'"):
        load_policy(_write(tmp_path, {"max_cpu": 2}))
    with pytest.raises(ConfigError, match=r"'max_kernels_per_user'.*whole number"):
        load_policy(_write(tmp_path, {"max_kernels_per_user": "four"}))
    with pytest.raises(ConfigError, match=r"Invalid size '32 gigs'"):
        load_policy(_write(tmp_path, {"max_mem_limit": "32 gigs"}))
    with pytest.raises(ConfigError, match="not valid JSON"):
        (tmp_path / "policy.json").write_text("{")
        load_policy(tmp_path / "policy.json")


def test_images_defaults_and_maxima(tmp_path: Path) -> None:
    rules = {
        "allowed_images": ["python", "pytorch-*"],
        "default_mem_limit": "8g",
        "max_mem_limit": "32g",
        "default_cpus": 2,
        "max_cpus": 8,
    }
    policy = load_policy(_write(tmp_path, rules))
    config, _ = apply_policy(policy, LaunchConfig(), _image("pytorch-cpu"), None)
    assert (config.mem_limit, config.cpus) == ("8g", 2.0)  # defaults fill what nobody set
    config, _ = apply_policy(policy, LaunchConfig(mem_limit="16g", cpus=4), _image("python"), None)
    assert (config.mem_limit, config.cpus) == ("16g", 4.0)  # within the maxima: as asked
    with pytest.raises(
        ConfigError, match=r"'dev' \(me/dev:1\) is not allowed.*allowed_images in .*policy"
    ):
        apply_policy(policy, LaunchConfig(), _image("dev"), None)
    with pytest.raises(ConfigError, match=r"mem_limit='64g' is over the maximum '32g'"):
        apply_policy(policy, LaunchConfig(mem_limit="64g"), _image("python"), None)
    with pytest.raises(ConfigError, match=r"cpus=16 is over the maximum 8 \(max_cpus in "):
        apply_policy(policy, LaunchConfig(cpus=16), _image("python"), None)
    capped = load_policy(_write(tmp_path, {"max_mem_limit": "4g", "max_cpus": 1}))
    config, _ = apply_policy(capped, LaunchConfig(), _image("python"), None)
    assert (config.mem_limit, config.cpus) == ("4g", 1.0)  # no limit is over any maximum


def test_gpus_are_narrowed_to_the_allowed_ones(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, {"allowed_gpus": ["2", "3"]}))
    _, gpus = apply_policy(policy, LaunchConfig(), _image("pytorch-gpu"), GPURequest(count=-1))
    assert gpus == GPURequest(device_ids=("2", "3"))  # "all" is all of yours
    _, gpus = apply_policy(policy, LaunchConfig(), _image("pytorch-gpu"), GPURequest(count=1))
    assert gpus == GPURequest(device_ids=("2",))
    with pytest.raises(ConfigError, match=r"GPU 0 is not yours to use here"):
        apply_policy(
            policy, LaunchConfig(), _image("pytorch-gpu"), GPURequest(device_ids=("0", "2"))
        )
    with pytest.raises(ConfigError, match=r"gpus=3 is more than the 2 allowed"):
        apply_policy(policy, LaunchConfig(), _image("pytorch-gpu"), GPURequest(count=3))
    none = load_policy(_write(tmp_path, {"allowed_gpus": []}))
    with pytest.raises(ConfigError, match="No GPUs may be used"):
        apply_policy(none, LaunchConfig(), _image("pytorch-gpu"), GPURequest(count=-1))
    assert apply_policy(none, LaunchConfig(), _image("python"), None)[1] is None


def _start(kernel_id: str, fake: FakeRuntime, cwd: Path, **config: Any) -> ContainerProvisioner:
    km = KernelManager(kernel_name="nbc-python")
    prov = ContainerProvisioner(
        kernel_id=kernel_id, kernel_spec=km.kernel_spec, parent=km, image="python", **config
    )
    prov.runtime = fake

    async def go() -> None:
        kw = await prov.pre_launch(cwd=str(cwd))
        await prov.launch_kernel(kw.pop("cmd"), **kw)

    asyncio.run(go())
    return prov


def test_the_provisioner_obeys_the_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = {"max_kernels_per_user": 2, "default_mem_limit": "2g", "max_cpus": 4}
    monkeypatch.setattr(policy_module, "POLICY_FILE", _write(tmp_path, rules))
    fake = FakeRuntime(images=[i.ref for i in load_catalog(include_user=False).values()])
    first = _start("k-1", fake, tmp_path)
    spec = fake.specs[-1]
    assert spec.mem_limit == "2g" and spec.nano_cpus == 4_000_000_000
    with pytest.raises(ConfigError, match=r"cpus=6 is over the maximum 4"):
        _start("k-x", fake, tmp_path, cpus=6)
    second = _start("k-2", fake, tmp_path)
    with pytest.raises(
        ConfigError, match=r"already runs 2 container kernels.*max_kernels_per_user"
    ):
        _start("k-3", fake, tmp_path)
    asyncio.run(first.cleanup())
    third = _start("k-3", fake, tmp_path)  # one ended: there is room again
    for prov in (second, third):
        asyncio.run(prov.cleanup())


def test_rules_the_engine_would_read_as_none_stop_at_load(tmp_path: Path) -> None:
    for rule, value in (("max_mem_limit", "0"), ("max_shm_size", "0g"), ("max_cpus", 0.001)):
        with pytest.raises(ConfigError, match=rf"{rule}"):
            load_policy(_write(tmp_path, {rule: value}))
    with pytest.raises(ConfigError, match=r"allowed_mounts.*absolute folder or ~"):
        load_policy(_write(tmp_path, {"allowed_mounts": ["data:rw"]}))
    policy = load_policy(_write(tmp_path, {"max_pool_size": 0, "allowed_networks": ["host"]}))
    assert policy.max_pool_size == 0 and policy.allowed_networks == ("host",)
