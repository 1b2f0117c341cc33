"""The export folder's server/server.py, as the image runs it: one module joined from
serving/image/, importable from a plain folder with the standard library and numpy only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from nbcontainers.serving.server import server_source


def test_shipped_server_stands_alone(tmp_path: Path) -> None:
    (tmp_path / "server.py").write_text(server_source())
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import server; "
        "assert callable(server.load_model) and callable(server.create_app); "
        "assert 'app' not in vars(server)  # built on first access, not at import\n"
        "assert not [m for m in sys.modules if m.startswith('nbcontainers')]\n"
        "print(sorted(server.__all__))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "'Server'" in done.stdout and "'decode_infer'" in done.stdout


def test_shipped_server_imports_numpy_prometheus_client_and_the_standard_library_only() -> None:
    imported = set()
    for node in ast.parse(server_source()).body:
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"numpy", "prometheus_client"}
