"""max_kernels_per_user holds when two kernel starts come at the same moment: the count and
the start are one step under the user's lock (KernelCountLock), so exactly one of two
concurrent starts at the limit is refused, with the policy's message, on a slow fake engine
(where the race is certain without the lock) and on the real Docker engine."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import AsyncKernelManager, KernelManager

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.errors import ConfigError
from nbcontainers.kernels import policy as policy_module
from nbcontainers.kernels.policy import KernelCountLock
from nbcontainers.kernels.provisioner import ContainerProvisioner
from nbcontainers.labels import KERNEL_ID
from nbcontainers.runtimes.base import ContainerSpec
from nbcontainers.runtimes.fake import FakeRuntime

LIMIT = r"already runs 1 container kernels, the most allowed \(max_kernels_per_user in "


@pytest.fixture
def one_kernel_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"max_kernels_per_user": 1}))
    path.chmod(0o644)
    monkeypatch.setattr(policy_module, "POLICY_FILE", path)


class SlowRun(FakeRuntime):
    """A fake engine whose container takes a while to start, as a real one does."""

    def run(self, spec: ContainerSpec) -> str:
        time.sleep(0.3)
        return super().run(spec)


def _outcomes(results: list[Any]) -> tuple[int, list[BaseException]]:
    errors = [r for r in results if isinstance(r, BaseException)]
    return len(results) - len(errors), errors


def test_two_starts_at_the_limit_one_is_refused(one_kernel_each: None, tmp_path: Path) -> None:
    fake = SlowRun(images=[i.ref for i in load_catalog(include_user=False).values()])
    provs = []
    for n in range(2):
        km = KernelManager(kernel_name="nbc-python")
        prov = ContainerProvisioner(
            kernel_id=f"k-{n}", kernel_spec=km.kernel_spec, parent=km, image="python"
        )
        prov.runtime = fake
        provs.append(prov)

    async def start(prov: ContainerProvisioner) -> None:
        kw = await prov.pre_launch(cwd=str(tmp_path))
        await prov.launch_kernel(kw.pop("cmd"), **kw)

    async def both() -> list[Any]:
        return await asyncio.gather(*(start(p) for p in provs), return_exceptions=True)

    started, errors = _outcomes(asyncio.run(both()))
    assert started == 1 and len(errors) == 1, errors
    with pytest.raises(ConfigError, match=LIMIT):
        raise errors[0]
    assert (
        len([s for s in fake.list({KERNEL_ID: None}) if s.running]) == 1
    )  # kernels, not the netns
    for prov in provs:
        asyncio.run(prov.cleanup())


def test_a_held_lock_ends_in_a_clear_error(tmp_path: Path) -> None:
    holder = KernelCountLock(tmp_path)
    holder.acquire()
    with pytest.raises(ConfigError, match=r"Another kernel start of yours has held .* for 0 s"):
        KernelCountLock(tmp_path, timeout=0.2).acquire()
    holder.release()
    again = KernelCountLock(tmp_path, timeout=0.2)
    again.acquire()  # free once released
    again.release()


@pytest.mark.docker
@pytest.mark.timeout(300)
def test_two_real_kernels_at_the_limit(
    one_kernel_each: None, python_image: str, tmp_path: Path
) -> None:
    managers = [AsyncKernelManager(kernel_name="nbc-python") for _ in range(2)]

    async def both() -> list[Any]:
        starts = (km.start_kernel(cwd=str(tmp_path)) for km in managers)
        results = await asyncio.gather(*starts, return_exceptions=True)
        for km in managers:
            if km.has_kernel:
                await km.shutdown_kernel(now=True)
        return results

    started, errors = _outcomes(asyncio.run(both()))
    assert started == 1 and len(errors) == 1, errors
    with pytest.raises(ConfigError, match=LIMIT):
        raise errors[0]
