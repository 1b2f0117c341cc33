"""Trim a serving image's virtualenv to what the model server uses, in the image's build stage.

Usage: python trim.py VENV SERVER_DIR MODEL_DIR EXAMPLE_JSON [--grpc]

It runs the server exactly as the image does (``server.main()``, one worker) under an
audit hook, sends it the notebook's example (and asks health, metadata, /metrics, OpenAPI,
gRPC's ServerLive with --grpc), and records every module loaded and file opened. Kept, as a
margin for code paths the example did not take: every file of a package directory that
something was loaded from (so a lazily imported sibling module stays), its byte-code, the
data folders next to it, every shared library folder (``*.libs``, loaded by the dynamic
linker where no hook sees it, like any folder of shared libraries alone) and every
``*.dist-info`` (version look-ups). Dropped:
distributions nothing loaded (setuptools, pkg_resources, ...), package directories nothing
was loaded from (``tests/``, unused scipy subpackages, ...), and the Cython and C sources,
headers and type stubs that only a compiler or type checker reads. Then the example is sent again
to a server on the trimmed venv; if anything fails, every file is put back.

Standalone: the standard library only; it is copied into the export folder as
``build/trim.py`` and never imported by the server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["keep_paths", "main", "trace"]

# Run as `python -c HOOK OUT SERVER_DIR`: the server's main() (uvicorn) under an audit hook
# that writes, at exit, every module file loaded and every file opened.
HOOK = """
import atexit, signal, sys
out = sys.argv.pop(1)
seen = set()
def hook(event, args):
    if event in ("open", "ctypes.dlopen") and isinstance(args[0], str):
        seen.add(args[0])
sys.addaudithook(hook)
def dump():
    files = seen | {getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}
    with open(out, "w") as f:
        f.write("\\n".join(sorted(files)))
atexit.register(dump)
# uvicorn restores the handler it found and raises the signal again once it has shut down:
# this one, so the process exits normally and the list is written.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
sys.path.insert(0, sys.argv.pop(1))
import server
server.main()
"""

# Folders whose name says they are never needed to serve, unless something was loaded there.
_NEVER = {"tests", "test", "testing", "benchmarks", "include", "__pycache__"}
# Files only a compiler or a type checker reads: Cython and C sources and headers, stubs.
_SOURCES = {".pyx", ".pxd", ".pxi", ".pyi", ".c", ".cc", ".cpp", ".h", ".hpp"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ask(url: str, body: bytes | None = None, timeout: float = 30) -> bytes:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return bytes(reply.read())


def trace(
    venv: Path, server: Path, model: Path, example: Path, grpc: bool
) -> tuple[set[str], bytes]:
    """Run the server, send it the example; the files it used and its answer."""
    port, grpc_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "NBC_MODEL_DIR": str(model),
        "PYTHONDONTWRITEBYTECODE": "1",
        # One worker: the hook sees one process (workers run the same code).
        "NBC_WORKERS": "1",
        "NBC_HOST": "127.0.0.1",
        "NBC_PORT": str(port),
    }
    if os.environ.get("NBC_MODEL_CACHE"):
        env["NBC_MODEL_CACHE"] = os.environ["NBC_MODEL_CACHE"]
    if grpc:
        env["NBC_GRPC_PORT"] = str(grpc_port)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "used.txt"
        python = str(venv / "bin" / "python")
        argv = [python, "-c", HOOK, str(out), str(server)]
        proc = subprocess.Popen(argv, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    _ask(base + "/v2/health/ready", timeout=2)
                    break
                except urllib.error.HTTPError as exc:
                    # 503 while loading; a load that failed says why, and won't get better.
                    error = json.loads(exc.read() or b"{}").get("error", "loading")
                    if error != "loading":
                        raise RuntimeError(f"the model did not load: {error}") from None
                    time.sleep(0.2)
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the server did not get ready") from None
                    time.sleep(0.2)
            name = json.loads((model / "meta.json").read_text())["name"]
            body = json.dumps({"inputs": json.loads(example.read_text())["inputs"]}).encode()
            answer = _ask(f"{base}/v2/models/{name}/infer", body)
            for path in ("/v2", f"/v2/models/{name}", "/metrics", "/openapi.json"):
                _ask(base + path)
            if grpc:
                # Any gRPC client will do: the server's side of the call is what is traced.
                call = (
                    "import grpc, sys; ch = grpc.insecure_channel(sys.argv[1]); "
                    "ch.unary_unary('/inference.GRPCInferenceService/ServerLive')(b'', timeout=30)"
                )
                subprocess.run([python, "-c", call, f"127.0.0.1:{grpc_port}"], check=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        used = set(out.read_text().splitlines()) if out.exists() else set()
    if not used:
        raise RuntimeError("the traced server wrote no list of what it used")
    return {os.path.realpath(p) for p in used if p}, answer


def keep_paths(site: Path, used: set[str]) -> tuple[list[Path], list[Path]]:
    """The files and folders under ``site`` to keep and to drop, by the rules above."""
    site = site.resolve()
    kept_dirs = {site}
    for name in used:
        path = Path(name)
        if site in path.parents:
            kept_dirs.update(p for p in path.parents if site in p.parents or p == site)
    drop: list[Path] = []
    for entry in sorted(site.iterdir()):
        if entry.is_dir():
            if entry.name.endswith((".dist-info", ".libs")) or entry in kept_dirs:
                if entry in kept_dirs:
                    _prune(entry, kept_dirs, drop)
                continue
            drop.append(entry)
        elif entry.suffix in (".py", ".so") and str(entry) not in used:
            drop.append(entry)  # a module of its own nothing imported (.pth files stay)
    return [p for p in site.iterdir() if p not in drop], drop


def _has_code(folder: Path) -> bool:
    # Python code: a folder of shared libraries alone (torch/lib) is the dynamic linker's,
    # which loads them as dependencies where no hook sees it, so it stays.
    return any(p.suffix == ".py" for p in folder.rglob("*"))


def _prune(folder: Path, kept_dirs: set[Path], drop: list[Path]) -> None:
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix in _SOURCES:
            drop.append(entry)
        if not entry.is_dir() or entry.name == "__pycache__":
            continue  # a kept folder keeps all its other files, and their byte-code
        if entry in kept_dirs:
            _prune(entry, kept_dirs, drop)
        elif entry.name in _NEVER or _has_code(entry):
            drop.append(entry)  # a package nothing was loaded from


def _size(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        total += sum(p.lstat().st_size for p in files)
    return total


def main(argv: list[str]) -> int:
    grpc = "--grpc" in argv
    venv, server, model, example = (Path(a) for a in argv if a != "--grpc")
    site = next((venv / "lib").glob("python3*/site-packages"))
    try:
        used, answer = trace(venv, server, model, example, grpc)
    except Exception as exc:  # the image's own smoke test will say what is wrong
        print(f"trim: kept the whole virtualenv; tracing the server failed: {exc}", flush=True)
        return 0
    _, drop = keep_paths(site, used)
    sizes = {path: _size([path]) for path in drop}
    before, dropped = _size([site]), sum(sizes.values())
    aside = Path(tempfile.mkdtemp(prefix="nbc-trim-"))
    moved: list[tuple[Path, Path]] = []
    try:
        for path in drop:
            target = aside / path.relative_to(site)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), str(target))
            moved.append((path, target))
        _, again = trace(venv, server, model, example, grpc)
        if json.loads(again)["outputs"] != json.loads(answer)["outputs"]:
            raise RuntimeError("the trimmed server answers the example differently")
    except Exception as exc:
        for path, target in reversed(moved):
            shutil.move(str(target), str(path))
        print(f"trim: kept the whole virtualenv; the trimmed one failed: {exc}", flush=True)
        return 0
    print(
        f"trim: {len(drop)} unused paths, {dropped / 1e6:.0f} of {before / 1e6:.0f} MB, "
        f"dropped; the example answers the same. Largest: "
        + ", ".join(
            p.relative_to(site).as_posix() for p in sorted(drop, key=lambda p: -sizes[p])[:8]
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
