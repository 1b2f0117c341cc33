"""`%container snapshot` of a real container kernel whose history installed from a private
index with a token, in a folder holding a settings.py with a key: the snapshot refuses naming
settings.py and its line, and once the file is excluded, neither the written folder nor the
rebuilt image (its labels, its history) holds the token or the key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..drive import notebook

pytestmark = pytest.mark.docker

TOKEN = "tok-e2e-7Hq2Zr9XwLp4"
KEY = "k8Jd93hHs72nXq0pLm4ZtR6vWb1cYe5u"


def _said(outputs: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(m["content"]) for m in outputs)


def test_snapshot_refuses_a_key_and_writes_no_token(
    python_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: Any
) -> None:
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path / "config"))
    (tmp_path / "analysis.py").write_text("print('analysis')\n")
    (tmp_path / "settings.py").write_text(f'DEBUG = False\nSECRET_KEY = "{KEY}"\n')
    folder = tmp_path / "env"
    ref = None
    try:
        with notebook(tmp_path) as fe:
            fe.text(f"%container use {python_image}")
            # A closed port: pip fails at once, and the line stays in the kernel's history.
            fe.text(
                "%pip install --quiet --retries 0 --timeout 2 "
                f"--index-url https://user:{TOKEN}@127.0.0.1:9/simple nothing-here"
            )
            content, outputs = fe.run("%container snapshot env")
            said = _said(outputs)
            assert content["status"] == "error" and content["ename"] == "UsageError", said
            assert "settings.py:2" in said and ".nbcignore" in said
            assert KEY not in said and TOKEN not in said
            assert not folder.exists()
            # Excluded as the message says: written, and rebuilt to the same packages.
            (tmp_path / ".nbcignore").write_text("settings.py\n")
            out = fe.text("%container snapshot env --verify")
            assert "0 differences" in out and TOKEN not in out
            fe.text("%container stop")
        from nbcontainers.snapshot import snapshot_image

        ref = snapshot_image(folder).ref
        env = json.loads((folder / "environment.json").read_text())
        assert any(
            "--index-url https://127.0.0.1:9/simple nothing-here" in line for line in env["history"]
        ), env["history"]
        assert sorted(p.name for p in (folder / "project").iterdir()) == ["analysis.py"]
        for secret in (TOKEN, KEY):
            leaked = subprocess.run(
                ["grep", "-rl", secret, str(folder)], capture_output=True, text=True
            )
            assert leaked.stdout == "", f"{secret} found in {leaked.stdout}"
        labels = runtime.api.inspect_image(ref)["Config"]["Labels"]
        assert labels.get("io.nbcontainers.snapshot") and TOKEN not in json.dumps(labels)
        history = subprocess.run(
            ["docker", "history", "--no-trunc", ref], capture_output=True, text=True, check=True
        )
        assert TOKEN not in history.stdout and KEY not in history.stdout
    finally:
        if ref is not None:
            for image in runtime.api.images(name=ref.split(":")[0], quiet=True):
                runtime.api.remove_image(image, force=True)
