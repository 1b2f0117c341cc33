"""The tree as the architecture: the README's layer list, read from the README itself, holds
for every import in the package (lazy ones included); engine knowledge stays in runtimes/ (SDKs,
command lines, engine words in engine-neutral modules, each engine in its own package); no
module reaches into another's private names, nor into an SDK's; big rooms say why they are
big."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import nbcontainers

ROOT = Path(nbcontainers.__file__).parent
README = ROOT.parent / "README.md"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300


def layers() -> list[list[str]]:
    """The fenced block after ``<!-- layers -->`` in the README: one layer per line, top first,
    its components before the first run of two spaces."""
    text = README.read_text()
    block = re.search(r"<!-- layers -->\s*```[a-z]*\n(.*?)```", text, re.S)
    assert block, "README.md lost its <!-- layers --> block"
    return [
        line.split("  ")[0].split()
        for line in block.group(1).splitlines()
        if line.strip() and not line.startswith("#")
    ]


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(["nbcontainers", *parts]), path


def imports(name: str, path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) for every import in the module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            for n in names:
                # `from . import x` names a submodule where one exists, else an attribute.
                if _is_module(f"{target}.{n}"):
                    yield f"{target}.{n}", [], node.lineno
                else:
                    yield target, [n], node.lineno


def _is_module(name: str) -> bool:
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def component(module: str) -> str:
    """``nbcontainers.relay.kernel`` -> ``kernels``; the package root itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(comp: str, table: list[list[str]]) -> int:
    if not comp:
        return -1  # the package root re-exports from everywhere: above every layer
    for i, row in enumerate(table):
        if comp in row:
            return i
    raise AssertionError(f"nbcontainers/{comp} is in no layer of README.md's <!-- layers --> block")


def test_every_component_has_a_layer() -> None:
    table = layers()
    for name, _ in modules():
        if component(name):
            layer_of(component(name), table)


def test_imports_point_downward() -> None:
    """A module imports its own component, or components on lower layers; two components on
    one layer stay independent of each other."""
    table = layers()
    upward = []
    for name, path in modules():
        here = component(name)
        if not here:
            continue  # the package root re-exports the public API
        for target, _, line in imports(name, path):
            inside = target == "nbcontainers" or target.startswith("nbcontainers.")
            if not inside or component(target) == here:
                continue
            there = component(target)
            if layer_of(there, table) <= layer_of(here, table):
                upward.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    assert upward == [], "imports that do not point downward:\n" + "\n".join(upward)


# The engines' command lines and SDKs. A module outside runtimes/ that needs one of them asks
# the seam instead (the ContainerRuntime Protocol, or a function of the engine's package).
ENGINE_CLIS = {"docker", "podman", "kubectl", "nerdctl", "crictl", "nvidia-ctk"}
ENGINE_SDKS = {
    # SDK -> the engine packages allowed to import it (Podman and Swarm use Docker's runtime
    # for the API they share, and import no SDK of their own)
    "docker": ("runtimes.docker",),
    "requests": ("runtimes.docker",),
    "kubernetes": ("runtimes.kubernetes",),
}
# Engine packages and which others they build on (Podman's and Swarm's APIs are Docker's).
ENGINE_PACKAGES = {
    "docker": set(),
    "podman": {"docker"},
    "swarm": {"docker"},
    "kubernetes": set(),
}
# Components outside runtimes/ that exist for one engine, and may use its package's functions:
# the hub's shared store is the admin's side of Podman's additional image stores; cluster/
# writes the Kubernetes objects whose names the Kubernetes runtime must agree with.
ENGINE_BOUND = {("hub", "podman"), ("cluster", "kubernetes")}
# Modules that say what every engine does, or decide for every engine: no engine's words.
ENGINE_NEUTRAL = ("runtimes/base.py", "runtimes/__init__.py", "kernels/", "relay/", "catalog/")


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _engine_package(name: str) -> str | None:
    """``nbcontainers.runtimes.podman.store`` -> ``podman``; else None."""
    parts = name.split(".")
    if len(parts) > 2 and parts[1] == "runtimes" and parts[2] in ENGINE_PACKAGES:
        return parts[2]
    return None


def test_engine_sdks_stay_in_their_engine_package() -> None:
    """docker-py, requests and the Kubernetes client are imported by their engine's package
    only (lazy imports included): everything else talks to the ContainerRuntime Protocol."""
    offenders = []
    for name, path in modules():
        where = name.removeprefix("nbcontainers.")
        for target, _, line in imports(name, path):
            allowed = ENGINE_SDKS.get(target.split(".")[0])
            if allowed is not None and not where.startswith(allowed):
                offenders.append(f"{_relative(path)}:{line} imports {target}")
    assert offenders == []


def test_no_engine_command_line_outside_runtimes() -> None:
    """No argv that starts with an engine's CLI, no ``shutil.which`` of one, and none of the
    engine's error texts outside runtimes/."""
    offenders = []
    for name, path in modules():
        if component(name) == "runtimes":
            continue
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            first = None
            if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
                first = node.elts[0]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "which":
                first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and first.value in ENGINE_CLIS:
                offenders.append(f"{_relative(path)}:{node.lineno} runs {first.value!r}")
        for pattern in (r"\"Conflict\"", r"cpu_stats", r"already in use"):
            for match in re.finditer(pattern, source):
                line = source.count("\n", 0, match.start()) + 1
                offenders.append(f"{_relative(path)}:{line} has {match.group(0)!r}")
    assert offenders == []


def test_engine_packages_keep_to_themselves() -> None:
    """An engine package imports only the engines it builds on, and nothing outside runtimes/
    reaches into an engine's package except through the registry's entry points."""
    offenders: set[str] = set()
    for name, path in modules():
        here = _engine_package(name)
        for target, _, line in imports(name, path):
            there = _engine_package(target)
            if there is None or there == here:
                continue
            if here is None and component(name) != "runtimes":
                if (component(name), there) not in ENGINE_BOUND:
                    offenders.add(f"{_relative(path)}:{line} imports {target}")
            elif here is not None and there not in ENGINE_PACKAGES[here]:
                offenders.add(f"{_relative(path)}:{line} imports {target}")
    assert sorted(offenders) == []


def test_no_vendor_private_api() -> None:
    """runtimes/ uses its SDKs' public API only: no ``self.api._post_json`` or
    ``client._url``, which an SDK release may remove without notice."""
    offenders = []
    for name, path in modules():
        if component(name) != "runtimes":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            if node.attr.startswith("__") or (
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            ):
                continue  # our own objects' private parts
            offenders.append(f"{_relative(path)}:{node.lineno} {ast.unparse(node)}")
    assert offenders == []


def test_engine_neutral_modules_name_no_engine_command() -> None:
    """The Protocol, the registry, kernels, the relay and the catalog decide for every engine:
    the command that helps a user with one engine (``docker service ps``, ``kubectl get
    pod``) comes from that engine's runtime (``ContainerRuntime.advice``)."""
    offenders = []
    for _, path in modules():
        if not _relative(path).startswith(ENGINE_NEUTRAL):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for match in re.finditer(r"`(docker|podman|kubectl) [^`]*`", node.value):
                    offenders.append(f"{_relative(path)}:{node.lineno} {match.group(0)}")
    assert offenders == []


def test_no_private_names_across_modules() -> None:
    reaching = []
    for name, path in modules():
        for target, names, line in imports(name, path):
            if target.startswith("nbcontainers") and target != name:
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private:
                    reaching.append(f"{path.relative_to(ROOT)}:{line} {target} {private}")
    assert reaching == []


def _reason_stated(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return "long because" in doc.lower() or "large because" in doc.lower()


def test_rooms_stay_small_or_say_why() -> None:
    big = []
    for _, path in modules():
        text = path.read_text()
        if _reason_stated(path):
            continue
        if text.count("\n") > MAX_MODULE_LINES:
            big.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno:
                size = node.end_lineno - node.lineno
                if size > MAX_CLASS_LINES:
                    big.append(f"{path.relative_to(ROOT)}: class {node.name} {size} lines")
    assert big == [], "split these, or say at the module's top why it is long:\n" + "\n".join(big)
