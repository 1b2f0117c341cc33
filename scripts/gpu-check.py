"""The GPU path on a real GPU, in minutes, where no container engine runs (`make gpu-check`).

Run as root on a machine with an NVIDIA driver and PyTorch with CUDA (no Docker needed):

1. what nbcontainers detects (NVML, else nvidia-smi): GPUs, driver, the CUDA it supports;
2. the driver <-> CUDA verdict for every GPU image of the catalog;
3. the CDI spec nbcontainers makes from the real device when the host has none (or the
   host's own spec), and the edits GPU 0 gets: its node, the control nodes, the libraries;
4. the kernel's command started with exactly those edits' environment and start lines,
   running `torch.cuda` on the GPU (no container here: the engine's part, the device nodes
   and mounts, is what the Docker/Podman tests prove on a fake GPU host);
5. the serving batcher on the GPU: 32 concurrent single-row clients of one model, batched
   against unbatched, same run (goal: at least 5x).

Each step prints its figures or why it could not run; the exit status is non-zero if a step
failed. Only the standard library, numpy and torch are needed besides this checkout.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FAILED: list[str] = []


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def detect() -> object:
    step("1. GPUs, driver and CUDA as nbcontainers sees them")
    from nbcontainers.hostgpus import detect_gpus

    host = detect_gpus()
    print(f"source={host.source} driver={host.driver_version} cuda={host.cuda_version}")
    for gpu in host.gpus:
        print(f"  GPU {gpu.index}: {gpu.name} {gpu.memory_mib} MiB {gpu.uuid}")
    if not host.gpus:
        FAILED.append(f"no GPU detected: {host.detail}")
    return host


def verdicts(host: object) -> None:
    step("2. driver <-> CUDA verdict for each GPU image of the catalog")
    from nbcontainers.catalog.entries import load_catalog
    from nbcontainers.errors import GPUUnavailable
    from nbcontainers.hostgpus import check_cuda

    for image in load_catalog(include_user=False).values():
        if not image.gpu:
            continue
        try:
            check_cuda(image.name, image.cuda, host, image.cpu_variant)  # type: ignore[arg-type]
            print(f"  {image.name}: CUDA {image.cuda} runs on this driver")
        except GPUUnavailable as exc:
            print(f"  {image.name}: refused: {exc}")


def spec_edits() -> object:
    step("3. the CDI spec and GPU 0's edits")
    from nbcontainers.runtimes import cdi
    from nbcontainers.runtimes.base import GPURequest

    found = cdi.find_spec()
    print(f"host spec: {found.path if found else 'none'}")
    made = cdi.host_spec()
    print(f"made from /dev/nvidia*: {made.names() if made else 'no /dev/nvidia0'}")
    spec = found or made
    if spec is None:
        FAILED.append("no CDI spec and no /dev/nvidia0")
        return None
    edits = cdi.select(spec, GPURequest(device_ids=(spec.names()[0],)))
    print(json.dumps({"devices": edits.devices, "mounts": [m.source for m in edits.mounts],
                      "env": dict(edits.env), "start": edits.start}, indent=2))  # fmt: skip
    return edits


def kernel_command(edits: object) -> None:
    step("4. the kernel's command with those edits: torch.cuda on the GPU")
    env = {**os.environ, **getattr(edits, "env", {})}
    start = " && ".join(getattr(edits, "start", ())) or "true"
    code = (
        "import torch; ok = torch.cuda.is_available(); print('cuda', ok); "
        "x = torch.randn(2048, 2048, device='cuda'); print('matmul', float((x @ x).sum()) != 0.0, "
        "torch.cuda.get_device_name(0))"
    )
    done = subprocess.run(
        ["/bin/sh", "-c", f'{start} && exec "$@"', "nbc-cdi", sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    print(done.stdout.strip() or done.stderr.strip()[-2000:])
    if done.returncode != 0 or "cuda True" not in done.stdout:
        FAILED.append("torch.cuda did not run with the spec's environment")


def batching() -> None:
    step("5. the serving batcher on the GPU: 32 concurrent clients, batched vs unbatched")
    import numpy as np
    import torch

    from nbcontainers.serving.image.batching import Batcher
    from nbcontainers.serving.image.metrics import Metrics

    model = (
        torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 10))
        .cuda()
        .eval()
    )

    def predict(rows: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = model(torch.as_tensor(rows, device="cuda")).cpu().numpy()
        return [out]

    async def run(batchable: bool, seconds: float = 5.0) -> float:
        batcher = Batcher(predict, batchable, False, 1024, Metrics(), max_queue=1024)
        row = np.random.rand(1, 512).astype(np.float32)
        done = 0
        end = time.monotonic() + seconds

        async def client() -> None:
            nonlocal done
            while time.monotonic() < end:
                await batcher.submit(row)
                done += 1

        await asyncio.gather(*(client() for _ in range(32)))
        return done / seconds

    predict(np.random.rand(8, 512).astype(np.float32))  # CUDA's first call, not measured
    unbatched = asyncio.run(run(False))
    batched = asyncio.run(run(True))
    print(f"unbatched {unbatched:.0f} req/s, batched {batched:.0f} req/s, "
          f"ratio {batched / unbatched:.1f}x (goal >= 5x)")  # fmt: skip
    if batched / unbatched < 5:
        FAILED.append(f"batching gave {batched / unbatched:.1f}x, under 5x")


def main() -> int:
    started = time.monotonic()
    host = detect()
    found: dict[str, object] = {}
    steps = (
        lambda: verdicts(host),
        lambda: found.update(edits=spec_edits()),
        lambda: kernel_command(found.get("edits")),
        batching,
    )
    for run_step in steps:
        try:
            run_step()
        except Exception as exc:  # report and go on: each step says what it can
            FAILED.append(f"{type(exc).__name__}: {exc}")
            print(f"  failed: {type(exc).__name__}: {exc}")
    verdict = "all steps passed" if not FAILED else "FAILED: " + "; ".join(FAILED)
    print(f"\n{time.monotonic() - started:.0f} s; {verdict}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
