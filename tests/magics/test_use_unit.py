"""`%container use NAME --gpus/--mem/--cpus` against the in-memory runtime: the resources
reach the provisioner's config as keys it takes, the admin's policy refuses more than it
allows naming the flag and the limit, and nothing is built or started then; `%container pin`
is handed to nbcontainers.magics.pin; `use`'s flags complete."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.errors import ConfigError
from nbcontainers.kernels import policy as policy_module
from nbcontainers.kernels.policy import load_policy
from nbcontainers.kernels.provisioner import ContainerProvisioner
from nbcontainers.relay.session import RelaySession, Resources, check_resources
from nbcontainers.runtimes import GPURequest

from .conftest import loaded


@pytest.fixture
def admin_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A policy file allowing 8g of memory, 2 CPUs and GPU 0 per kernel."""
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"max_mem_limit": "8g", "max_cpus": 2, "allowed_gpus": ["0"]}))
    path.chmod(0o644)
    monkeypatch.setattr(policy_module, "POLICY_FILE", path)
    return path


@pytest.fixture
def engine(fake_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr("nbcontainers.runtimes.get_runtime", lambda name="auto": fake_runtime)
    return fake_runtime


def test_resources_become_the_provisioners_settings(tmp_path: Path) -> None:
    session = RelaySession(lambda: str(tmp_path))
    kernel = session.specify("python", Resources(gpus="1", memory="8g", cpus=1.5))
    config = kernel.spec.metadata["kernel_provisioner"]["config"]
    assert (config["gpus"], config["mem_limit"], config["cpus"]) == ("1", "8g", 1.5)
    assert config["extra_mounts"][-1] == f"{tmp_path}:{tmp_path}:rw"  # the transfer folder
    # Keys the provisioner takes (an unknown one would be a ConfigError), with these values.
    launch = ContainerProvisioner(**config).launch_config()
    assert (launch.mem_limit, launch.cpus) == ("8g", 1.5)
    # Without flags, the kernelspec's own config is left as it is.
    plain = session.specify("python").spec.metadata["kernel_provisioner"]["config"]
    assert not {"gpus", "mem_limit", "cpus"} & set(plain)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        ("--mem 64g", "--mem 64g: mem_limit='64g' is over the maximum '8g' (max_mem_limit in "),
        ("--memory 64g", "--mem 64g: mem_limit='64g' is over the maximum '8g' (max_mem_limit"),
        ("--cpus 4", "--cpus 4: cpus=4 is over the maximum 2 (max_cpus in "),
        ("--mem 1k", "--mem 1k: "),  # below any kernel's needs, policy or not
    ],
)
def test_a_request_over_the_policy_names_the_flag_and_the_limit(
    shell: InteractiveShell, admin_caps: Path, engine: Any, flags: str, said: str
) -> None:
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("container", f"use python {flags}")
    assert type(caught.value) is UsageError
    assert str(caught.value).startswith(said), str(caught.value)
    if "max_" in said:
        assert f"{admin_caps}, set by your admin). Ask for less." in str(caught.value)
    # Refused before anything reached the engine: no build, no container.
    assert engine.builds == [] and engine.list({}) == []
    assert loaded(shell).state.relays == {}


def test_gpus_over_the_policy_name_the_flag(admin_caps: Path) -> None:
    image = load_catalog()["python"]
    with pytest.raises(ConfigError) as caught:
        check_resources(load_policy(), image, Resources(gpus="2"), GPURequest(count=2))
    assert str(caught.value).startswith("--gpus 2: gpus=2 is more than the 1 allowed (")
    check_resources(load_policy(), image, Resources(gpus="0"), GPURequest(device_ids=("0",)))


def test_requests_within_the_policy_pass_the_prechecks(
    tmp_path: Path, admin_caps: Path, engine: Any
) -> None:
    session = RelaySession(lambda: str(tmp_path))
    kernel = session.specify("python", Resources(memory="4g", cpus=2))
    checked = session.precheck(kernel, show=lambda *a, **k: pytest.fail("nothing to build"))
    assert checked.resources == Resources(memory="4g", cpus=2) and checked.gpus is None


def test_pin_is_handed_to_the_pin_module(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    called: list[tuple[Any, list[str]]] = []
    module = SimpleNamespace(pin=lambda sh, argv: called.append((sh, argv)))
    monkeypatch.setitem(sys.modules, "nbcontainers.magics.pin", module)
    shell.run_line_magic("container", "pin --force 'a b' c")
    assert called == [(shell, ["--force", "a b", "c"])]


def test_pin_without_its_module_is_a_clear_usage_error(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "nbcontainers.magics.pin", None)  # as if not installed
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("container", "pin")
    assert type(caught.value) is UsageError
    assert str(caught.value).startswith(
        "%container pin is not available in this installation of nbcontainers"
    )


def test_use_completes_its_flags_once_each(shell: InteractiveShell) -> None:
    complete = loaded(shell).completion.complete_magic

    def offered(line: str) -> list[str]:
        return complete(shell, SimpleNamespace(line=line))

    assert offered("%container use python ") == ["--cpus", "--gpus", "--mem"]
    assert offered("%container use python --gpus 1 ") == ["--cpus", "--mem"]
    assert offered("%container use python --memory 8g --") == ["--cpus", "--gpus"]
    assert offered("%container use python --mem ") == []  # the value is the user's
    assert "pin" in offered("%container ")
