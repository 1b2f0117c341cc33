"""The attacker's view of a snapshot folder: credentials a session used (in its `%pip` history,
in the URLs it installed from) and secrets in the notebook's folder must not reach anything a
snapshot writes or copies into the image. No engine: the folder is what is checked."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nbcontainers.errors import SnapshotError
from nbcontainers.recipe.capture import parse_capture
from nbcontainers.snapshot import write_snapshot

TOKEN = "tok-9Qx7LwZr2VbN"
SIGNATURE = "5f1c2e9a8b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e"
KEY = "k8Jd93hHs72nXq0pLm4ZtR6vWb1cYe5u"
PRESIGNED = (
    "https://bucket.s3.amazonaws.com/wheels/signed-1.0-py3-none-any.whl"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20260101"
    f"&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-Security-Token={TOKEN}"
    f"&X-Amz-Signature={SIGNATURE}"
)
SAS = (
    "https://acct.blob.core.windows.net/wheels/sas-2.0-py3-none-any.whl"
    f"?sv=2022-11-02&se=2026-01-01T00%3A00%3A00Z&sp=r&sig={SIGNATURE[:40]}"
)
GCS = (
    "https://storage.googleapis.com/b/gcs-3.0-py3-none-any.whl"
    f"?GoogleAccessId=svc%40proj.iam.gserviceaccount.com&Expires=1&Signature={SIGNATURE[8:48]}"
)
SECRETS = (TOKEN, SIGNATURE, SIGNATURE[:40], SIGNATURE[8:48], KEY, "AKIAIOSFODNN7EXAMPLE")


def _dist(name: str, version: str, direct_url: object = None) -> dict[str, object]:
    return {
        "name": name,
        "version": version,
        "installer": "pip",
        "direct_url": direct_url,
        "requires": [],
        "top_level": [name],
    }


def _capture(cwd: Path) -> str:
    """A session that installed from a private index with a token, from presigned S3, GCS
    and Azure URLs, and from a VCS URL whose user name is a token."""
    archive = {"archive_info": {"hashes": {"sha256": "ab" * 32}}}
    dists = [
        _dist("numpy", "2.4.6"),
        _dist("signed", "1.0", {"url": PRESIGNED, **archive}),
        _dist("sas", "2.0", {"url": SAS, **archive}),
        _dist("gcs", "3.0", {"url": GCS, **archive}),
        _dist(
            "mylib",
            "0.1",
            {
                "url": f"https://{TOKEN}@git.example/me/mylib",
                "vcs_info": {"vcs": "git", "commit_id": "abc123"},
            },
        ),
    ]
    return json.dumps(
        {
            "python": "3.11.2",
            "distributions": dists,
            "history": [
                f"%pip install --index-url https://user:{TOKEN}@pypi.corp.example/simple mylib",
                f"!pip install '{PRESIGNED}'",
                f"%pip install --extra-index-url=https://__token__:{TOKEN}@x.example/s sas",
            ],
            "image": "python",
            "cwd": str(cwd),
        }
    )


def _leaks(folder: Path) -> list[str]:
    """Every file under ``folder`` holding one of the planted secrets, with the secret."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            found += [f"{path.relative_to(folder)}: {s}" for s in SECRETS if s in text]
    return found


def test_no_credential_from_history_or_urls_reaches_the_folder(tmp_path: Path) -> None:
    # On the unchanged code: environment.json's history kept `user:tok-…@`, and the lock,
    # environment.json kept X-Amz-Signature, sig= and Signature= values.
    snap = parse_capture(_capture(tmp_path))
    folder = write_snapshot(snap, tmp_path / "env")
    assert _leaks(folder) == []
    env = json.loads((folder / "environment.json").read_text())
    # Redacted, not dropped: the reader still sees what was installed and from where.
    assert env["history"][0] == "%pip install --index-url https://pypi.corp.example/simple mylib"
    assert "X-Amz-Signature=REDACTED" in env["history"][1]
    lock = (folder / "requirements.lock").read_text()
    assert "signed @ https://bucket.s3.amazonaws.com/wheels/signed-1.0-py3-none-any.whl?" in lock
    assert "X-Amz-Signature=REDACTED" in lock and "sig=REDACTED" in lock
    assert "Signature=REDACTED" in lock and "X-Amz-Date=20260101T000000Z" in lock
    assert "mylib @ git+https://git.example/me/mylib@abc123" in lock


def _project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "analysis.py").write_text("import numpy\nprint(numpy.ones(3))\n")
    (root / "requirements.txt").write_text(
        f"--index-url https://user:{TOKEN}@pypi.corp.example/simple\nnumpy==2.4.6\n"
    )
    (root / "settings.py").write_text(f'DEBUG = False\nSECRET_KEY = "{KEY}"\n')
    return root


def _plain_snapshot(cwd: Path) -> str:
    return json.dumps(
        {"python": "3.11.2", "distributions": [_dist("numpy", "2.4.6")], "cwd": str(cwd)}
    )


def test_secrets_in_the_folder_stop_the_snapshot_naming_file_and_line(tmp_path: Path) -> None:
    # On the unchanged code: the snapshot was written and project/settings.py and
    # project/requirements.txt held the key and the token.
    project = _project(tmp_path / "nb")
    snap = parse_capture(_plain_snapshot(project))
    target = tmp_path / "env"
    with pytest.raises(SnapshotError) as caught:
        write_snapshot(snap, target, project=project)
    said = str(caught.value)
    assert "settings.py:2" in said and "requirements.txt:1" in said
    assert ".nbcignore" in said and "pragma: allowlist secret" in said
    assert not any(s in said for s in SECRETS)  # it names the line, never the secret
    assert not target.exists()
    # Excluded by the user: the snapshot is written without them, and holds no secret.
    (project / ".nbcignore").write_text("# kept out of snapshots\nsettings.py\nrequirements*.txt\n")
    folder = write_snapshot(snap, target, project=project)
    assert sorted(p.name for p in (folder / "project").iterdir()) == ["analysis.py"]
    assert _leaks(folder) == []


def test_a_notebook_cell_or_output_holding_a_key_is_named_by_cell(tmp_path: Path) -> None:
    import nbformat

    project = tmp_path / "nb"
    project.mkdir()
    nb = nbformat.v4.new_notebook()
    plot = nbformat.v4.new_code_cell("digest = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934c'")
    # A plotted figure (random base64) and a hash are no secret: no false alarm for them.
    plot.outputs = [
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo" + "Qz9x" * 500})
    ]
    leaky = nbformat.v4.new_code_cell("import os\nprint(os.environ['AWS_ACCESS_KEY_ID'])")
    leaky.outputs = [nbformat.v4.new_output("stream", name="stdout", text="AKIAIOSFODNN7EXAMPLE\n")]
    nb.cells += [plot, leaky]
    nbformat.write(nb, str(project / "analysis.ipynb"))
    snap = parse_capture(_plain_snapshot(project))
    with pytest.raises(SnapshotError) as caught:
        write_snapshot(snap, tmp_path / "env", project=project)
    said = str(caught.value)
    assert "analysis.ipynb: cell 2, output line 1" in said
    assert "AKIAIOSFODNN7EXAMPLE" not in said
    plot_only = tmp_path / "nb2"
    plot_only.mkdir()
    nb.cells = [plot]
    nbformat.write(nb, str(plot_only / "analysis.ipynb"))
    folder = write_snapshot(
        parse_capture(_plain_snapshot(plot_only)), tmp_path / "env2", project=plot_only
    )
    assert (folder / "project" / "analysis.ipynb").is_file()


def test_a_vendored_wheel_of_a_local_package_is_scanned(tmp_path: Path) -> None:
    wheel = tmp_path / "localpkg-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("localpkg/__init__.py", "VALUE = 42\n")
        zf.writestr("localpkg/config.py", f'API_KEY = "{KEY}"\n')
    dist = _dist("localpkg", "0.0.1", {"url": "file:///src/localpkg", "dir_info": {}})
    snap = parse_capture(json.dumps({"python": "3.11.2", "distributions": [dist]}))
    with pytest.raises(SnapshotError) as caught:
        write_snapshot(snap, tmp_path / "env", wheels={"localpkg": wheel})
    said = str(caught.value)
    assert "localpkg-0.0.1-py3-none-any.whl: localpkg/config.py:1" in said
    assert KEY not in said


def test_cli_refusal_prints_file_and_line_but_never_the_secret(tmp_path: Path) -> None:
    project = _project(tmp_path / "nb")
    (project / "requirements.txt").unlink()
    target = tmp_path / "env"
    code = (
        "import json, sys; from pathlib import Path; "
        "from nbcontainers.recipe.capture import parse_capture; "
        "from nbcontainers.snapshot import write_snapshot; "
        "from nbcontainers.cli.common import errors_as_messages; "
        f"snap = parse_capture({_plain_snapshot(project)!r}); "
        f"errors_as_messages(lambda: write_snapshot(snap, Path({str(target)!r}), "
        f"project=Path({str(project)!r})))()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0
    assert "settings.py:2" in done.stderr and "Traceback" not in done.stderr
    assert KEY not in done.stdout + done.stderr


def test_a_line_marked_as_no_secret_is_copied(tmp_path: Path) -> None:
    project = tmp_path / "nb"
    project.mkdir()
    marked = f'SECRET_KEY = "{KEY}"  # pragma: allowlist secret\n'
    (project / "settings.py").write_text(marked)
    (project / "requirements.txt").write_text(
        f"https://h.example/w.whl?sig={TOKEN}  # pragma: allowlist secret\n"
    )
    folder = write_snapshot(
        parse_capture(_plain_snapshot(project)), tmp_path / "env", project=project
    )
    assert (folder / "project" / "settings.py").read_text() == marked


def test_no_false_alarm_on_names_hashes_and_plain_urls_but_a_password_is_caught(
    tmp_path: Path,
) -> None:
    from nbcontainers.snapshot.secrets import scan_project

    code = tmp_path / "code.py"
    code.write_text(
        'FIELDS = {"imagePullSecrets": "name", "secret_name": "token_field"}\n'
        "DIGEST = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'\n"
        'INDEX = "https://pypi.org/simple/numpy/?format=json"\n'
        'password = "hunter2"\n'
    )
    assert [f.where for f in scan_project([("code.py", code)], [])] == ["code.py:4"]


def test_build_log_lines_of_verify_are_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbcontainers.catalog.build
    import nbcontainers.snapshot.verify as verify

    def build_image(image: object, runtime: object, on_line: object, on_event: object) -> None:
        assert callable(on_line)
        on_line(f"Collecting signed @ {PRESIGNED}")
        on_line(f"Looking in indexes: https://user:{TOKEN}@pypi.corp.example/simple")

    snap = parse_capture(_plain_snapshot(tmp_path))
    monkeypatch.setattr(nbcontainers.catalog.build, "build_image", build_image)
    monkeypatch.setattr(verify, "image_packages", lambda runtime, ref: snap)
    folder = write_snapshot(snap, tmp_path / "env")
    seen: list[str] = []
    verify.build_and_verify(folder, snap, runtime=None, on_line=seen.append)  # type: ignore[arg-type]
    assert len(seen) == 2 and not any(s in line for s in SECRETS for line in seen)
    assert "X-Amz-Signature=REDACTED" in seen[0]
