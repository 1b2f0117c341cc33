"""Model -> tested serving image: capture in the kernel, lock, render, build, smoke test."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ExportError
from ..evaluate import Evaluate
from ..recipe.capture import capture_kernel
from ..recipe.dockerfile import DEFAULT_BASE
from ..runtimes.base import BuildCallback, ContainerRuntime
from ..untrusted import copy_left_tree, kernel_owners
from . import serialize, smoke
from .lock import plan_lock
from .render import DEBIAN_PYTHON, ExportPlan, dns_name, write_export

__all__ = [
    "ExportOptions",
    "Exported",
    "base_for",
    "batching_line",
    "export",
    "export_from_namespace",
    "kernel_capture",
]

Say = Callable[[str], None]


@dataclass(frozen=True)
class ExportOptions:
    """What the user asked for (the magic's and the CLI's options)."""

    example: str = ""
    format: str = "auto"
    gpu: bool | None = None  # None: as the model is (on a GPU or not)
    method: str | None = None
    init_args: dict[str, Any] = field(default_factory=dict)
    image: str | None = None
    folder: Path | None = None
    build: bool = True
    run: bool = False
    grpc: bool = False  # also the OIP gRPC service, on manifests.GRPC_PORT
    port: int | None = None
    push: str | None = None
    source: str = ""


@dataclass
class Exported:
    """The result: the folder, the image, and the running server when --run was given."""

    name: str
    folder: Path
    image: str | None = None
    size: int = 0
    build_seconds: float = 0.0
    ready_seconds: float = 0.0
    served: smoke.Served | None = None
    pushed: str | None = None
    runtime: ContainerRuntime | None = None

    @property
    def url(self) -> str | None:
        return self.served.url if self.served else None

    def predict(self, rows: Any) -> Any:
        """Ask the running server's plain /predict for these rows (a list or an array)."""
        if self.served is None:
            raise ExportError("Not running: export again with --run.")
        rows = rows.tolist() if hasattr(rows, "tolist") else rows
        if hasattr(rows, "to_dict"):
            rows = rows.to_dict(orient="records")
        return smoke.request(self.served.url + "/predict", {"instances": rows})["predictions"]

    def stop(self) -> None:
        """Stop and remove the serving container."""
        if self.served is not None and self.runtime is not None:
            self.runtime.stop(self.served.container_id, timeout=10)
            self.runtime.remove(self.served.container_id)
            self.served = None

    def __repr__(self) -> str:
        where = f", serving at {self.url}" if self.served else ""
        return f"<Exported {self.name!r}: {self.image or 'not built'} from {self.folder}{where}>"


def kernel_capture(
    evaluate: Evaluate, name: str, out_dir: str, options: ExportOptions
) -> dict[str, Any]:
    """Run the model capture in the kernel; raise ExportError for input the user must fix."""
    # A module of its own, in sys.modules so the expression below can reach it: the user's
    # namespace gets no name of ours.
    define = (
        "import sys as __nbc_sys, types as __nbc_types\n"
        "__nbc_m = __nbc_types.ModuleType('_nbc_export')\n"
        f"exec({serialize.source()!r}, __nbc_m.__dict__)\n"
        "__nbc_sys.modules['_nbc_export'] = __nbc_m\n"
        "del __nbc_sys, __nbc_types, __nbc_m\n"
    )
    opts = {
        "format": options.format,
        "gpu": options.gpu,
        "method": options.method,
        "init_args": options.init_args,
    }
    expression = (
        "__import__('sys').modules['_nbc_export'].export_object(get_ipython().user_ns, "
        f"{name!r}, {options.example!r}, {out_dir!r}, {json.dumps(opts)!r})"
    )
    result = json.loads(evaluate(define, expression))
    if "error" in result:
        raise ExportError(result["error"])
    return dict(result)


def base_for(python: str) -> str:
    """Debian bookworm's python3 is 3.11; other versions get the official slim image."""
    return DEFAULT_BASE if python == DEBIAN_PYTHON else f"python:{python}-slim-bookworm"


def export(
    evaluate: Evaluate,
    name: str,
    options: ExportOptions,
    *,
    work_dir: str,
    runtime: ContainerRuntime,
    say: Say = print,
    version: str = "",
    on_build: BuildCallback | None = None,
) -> Exported:
    """Export ``name`` from the kernel ``evaluate`` runs in: folder, image, smoke test.
    ``on_build`` gets the build's events (a progress bar) instead of its step lines."""
    version = version or _installed_version()
    from ..catalog.build import build_image
    from ..catalog.entries import CatalogImage

    shared = Path(work_dir) / f"export-{uuid.uuid4().hex[:8]}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # a container kernel may run as another uid
    private = Path(tempfile.mkdtemp(prefix="nbc-export-model-"))
    staged = private / "staged"
    try:
        owners = kernel_owners(evaluate, shared)
        meta = kernel_capture(evaluate, name, str(shared), options)
        # Only our private copy is read from here on: what the kernel left is the kernel's
        # to change under us, and a link or FIFO there is refused (see untrusted.py).
        copy_left_tree(shared, staged, owners, ExportError)
        # Not an error: the safetensors form serves the same answers; the user should know.
        fallback = meta.pop("note", "")
        if fallback:
            say(
                f"torch.export could not trace {name} ({fallback}); saved safetensors weights "
                "and the class source instead."
            )
        # The kernel's own pins: the image gets exactly the versions the model was made with.
        snap = capture_kernel(evaluate)
        lock, extra = plan_lock(
            snap,
            meta["requires"],
            bool(meta.get("gpu")),
            grpc=options.grpc,
            safetensors=meta["format"] == "safetensors",
        )
        model = dns_name(name)
        folder = (options.folder or Path.cwd() / f"serving-{model}").expanduser().resolve()
        ref = options.image or f"nbcontainers/serving-{model}:{_content_hash(staged, lock)}"
        plan = ExportPlan(
            name=model,
            image=ref,
            meta=meta,
            lock=lock,
            base=base_for(meta["python"]),
            python=meta["python"],
            source=options.source,
            extra_index=extra,
            grpc=options.grpc,
        )
        written = write_export(plan, staged, folder, version)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)
    result = Exported(name=model, folder=written, runtime=runtime)
    say(f"Exported {name} ({meta['kind']}, {meta['format']}) to {written}")
    say(batching_line(meta))
    if not options.build:
        return result
    started = time.monotonic()
    image = CatalogImage(
        name=f"serving-{model}",
        ref=ref,
        display_name=model,
        source=written,
        base=plan.base,
        user_defined=True,
    )
    lines = None if on_build else _progress(say)
    info = build_image(image, runtime, on_line=lines, on_event=on_build)
    result.image, result.size = ref, info.size
    result.build_seconds = time.monotonic() - started
    say(f"Built {ref} ({info.size / 1e6:.0f} MB) in {result.build_seconds:.0f} s; smoke test...")
    example = json.loads((written / "example.json").read_text())
    # Always run once, --run or not: no image is handed over before it answered correctly.
    served = smoke.start(
        runtime,
        ref,
        model,
        port=options.port if options.run else None,
        gpu=bool(meta.get("gpu")) and _has_gpu(),
        container_name=f"nbc-serving-{model}" if options.run else None,
        grpc=options.grpc,
    )
    try:
        result.ready_seconds = smoke.wait_ready(runtime, served)
        smoke.smoke_test(served, example)
    except BaseException:
        _remove(runtime, served)
        raise
    say(
        f"Smoke test passed: ready in {result.ready_seconds:.1f} s, the answer to the example "
        "matches the notebook's."
    )
    try:
        if options.push:
            target = f"{options.push.rstrip('/')}/{ref.split('/', 1)[-1]}"
            try:
                result.pushed = runtime.push(ref, target)
            except BaseException:
                # The tag made for the push: a failed push leaves no stray name behind.
                _untag(runtime, target)
                raise
            say(f"Pushed {target} ({result.pushed or 'digest unknown'}).")
    except BaseException:
        _remove(runtime, served)  # no handle reaches the user: don't leave it running
        raise
    if options.run:
        result.served = served
        say(
            f"Serving at {served.url}/v2/models/{model}/infer (and /predict"
            + (f"; gRPC at {served.grpc}" if served.grpc else "")
            + "); "
            f"stop with `docker rm -f nbc-serving-{model}`."
        )
    else:
        _remove(runtime, served)
    return result


def export_from_namespace(
    namespace: dict[str, Any],
    name: str,
    options: ExportOptions,
    *,
    runtime: ContainerRuntime,
    say: Say = print,
    version: str = "",
) -> Exported:
    """Export ``namespace[name]`` from this process (the CLI, scripts, benchmarks)."""
    # Just enough of IPython for the capture: it reads get_ipython().user_ns.
    shell = type("Shell", (), {"user_ns": namespace})()
    scope: dict[str, Any] = {"get_ipython": lambda: shell}

    def evaluate(code: str, expression: str) -> Any:
        exec(code, scope)  # our own capture code
        return eval(expression, scope)

    with tempfile.TemporaryDirectory(prefix="nbc-export-") as work:
        return export(
            evaluate, name, options, work_dir=work, runtime=runtime, say=say, version=version
        )


def batching_line(meta: dict[str, Any]) -> str:
    """What the export found about batching, as the export's output says it."""
    why = meta.get("batching", "")
    if meta.get("batchable"):
        return f"Batching on: on the example, {why}; concurrent requests share model calls."
    return (
        f"Batching off: {why}. The server runs each request in its own model call "
        "(meta.json: batchable false)."
    )


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("nbcontainers")
    except PackageNotFoundError:
        return "unknown"


def _content_hash(staged: Path, lock: str) -> str:
    """A tag from what the image is made of: the model files and the lock."""
    # Same model and lock, same tag: a re-export reuses the built image's cache and name.
    digest = hashlib.sha256(lock.encode())
    for path in sorted(staged.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(staged).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _remove(runtime: ContainerRuntime, served: smoke.Served) -> None:
    runtime.stop(served.container_id, timeout=5)
    runtime.remove(served.container_id)


def _untag(runtime: ContainerRuntime, target: str) -> None:
    with contextlib.suppress(Exception):  # the push's own error is the one to report
        runtime.remove_image(target)


def _has_gpu() -> bool:
    from ..hostgpus import detect_gpus

    return bool(detect_gpus())


def _progress(say: Say) -> Callable[[str], None]:
    """Build output: only the step headers, so a notebook isn't flooded."""

    seen: set[str] = set()

    def on_line(line: str) -> None:
        step = re.match(r"#\d+ (\[[^\]]+\] .*)", line)
        if step and step.group(1) not in seen:
            seen.add(step.group(1))
            say("  " + step.group(1)[:140])

    return on_line
