"""Code that runs elsewhere, sent as one source: how modules are joined, and that what a kernel
receives defines nothing but the one function it calls."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.recipe.capture import capture_source, parse_capture
from nbcontainers.serving import serialize
from nbcontainers.sources import bundle, call_in_kernel


def test_bundle_joins_modules_in_order_without_their_relative_imports(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(
        '"""A."""\n\nfrom __future__ import annotations\n\n__all__ = ["f"]\n\n\n'
        "def f() -> int:\n    return 1\n"
    )
    (tmp_path / "b.py").write_text(
        '"""B."""\n\nfrom __future__ import annotations\n\nfrom .a import (\n    f,\n)\n\n'
        '__all__ = ["g"]\n\n\ndef g() -> int:\n    return f() + 1\n'
    )
    source = bundle(tmp_path, ["a", "b"], "Both.")
    ns: dict[str, Any] = {}
    exec(source, ns)
    assert ns["g"]() == 2 and ns["__all__"] == ["f", "g"] and ns["__doc__"] == "Both.\n"
    assert "from .a" not in source and '"""A."""' not in source


def test_bundle_refuses_what_would_not_survive_joining(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def _helper() -> None: ...\n")
    (tmp_path / "b.py").write_text("def _helper() -> None: ...\n")
    with pytest.raises(ValueError, match=r"_helper is defined in both a\.py and b\.py"):
        bundle(tmp_path, ["a", "b"], "x")
    (tmp_path / "c.py").write_text("from . import a\n")
    with pytest.raises(ValueError, match="cannot be bundled"):
        bundle(tmp_path, ["c"], "x")
    (tmp_path / "d.py").write_text("from ..errors import SnapshotError\n")
    with pytest.raises(ValueError, match="outside its folder"):
        bundle(tmp_path, ["d"], "x")


class History:
    def get_range(self, output: bool) -> list[tuple[int, int, str]]:
        return [(1, 1, "x = 1\n%pip install tomli-w==1.0.0"), (1, 2, "!apt-get install -y curl")]


def test_capture_leaves_one_name_and_reads_history_from_the_senders_shell() -> None:
    shell = type("Shell", (), {"history_manager": History()})()
    ns: dict[str, Any] = {"get_ipython": lambda: shell}
    exec(capture_source(), ns)
    assert sorted(k for k in ns if k != "__builtins__") == ["__nbc_capture", "get_ipython"]
    snap = parse_capture(ns["__nbc_capture"]())
    assert snap.history == ("%pip install tomli-w==1.0.0", "!apt-get install -y curl")
    assert any(p.key == "pytest" for p in snap.packages)
    assert sorted(k for k in ns if k != "__builtins__") == ["__nbc_capture", "get_ipython"]


def test_call_in_kernel_brings_the_value_back_and_removes_its_function() -> None:
    ns: dict[str, Any] = {}

    def evaluate(code: str, expression: str) -> Any:
        exec(code, ns)
        return eval(expression, ns)

    source = "import json\n\ndef twice(x):\n    return json.dumps([x, x])\n"
    assert json.loads(call_in_kernel(evaluate, source, "twice", "a")) == ["a", "a"]
    assert sorted(k for k in ns if k != "__builtins__") == []


def _top_level_imports(source: str) -> set[str]:
    found = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_what_a_kernel_receives_imports_only_the_standard_library() -> None:
    for source in (serialize.source(), capture_source()):
        assert _top_level_imports(source) <= set(sys.stdlib_module_names)
        compile(source, "sent", "exec")
