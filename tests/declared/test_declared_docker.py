"""Notebooks that carry their environment, on real Docker: `%container pin` in a real
notebook kernel (nbclient), the pinned image removed and got back by digest from a registry
on loopback (:mod:`tests.registry`), a catalog pin whose image is gone refused with the
reason; and the ``nbc-notebook`` kernelspec starting what a notebook declares through
papermill, a real Jupyter Server session, and the admin's policy refusing a declaration
over its maximum. Every image, container and session a test makes is removed by it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from nbcontainers.catalog.entries import load_catalog, register_user_image
from nbcontainers.errors import ConfigError
from nbcontainers.kernels.declared import PIN_MIMETYPE, apply_declaration, read_declaration
from nbcontainers.kernels.plan import IMAGE_LABEL, LaunchConfig
from nbcontainers.labels import KERNEL_ID

from ..drive import cell_text, connected, run, start
from ..registry import Registry, digest_of, layer_of, saved_image

pytestmark = pytest.mark.docker
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with Registry().running() as running:
        yield running


@pytest.fixture
def own_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "config"
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(folder))
    monkeypatch.setenv("NBCONTAINERS_PROGRESS", "")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))  # trust database
    return folder


def sign(nb: Any) -> None:
    """What Jupyter Server does when the user saves a notebook: trust it in their database."""
    from nbformat.sign import NotebookNotary

    NotebookNotary().sign(nb)


def write_notebook(path: Path, sources: list[str], metadata: dict[str, Any] | None = None) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata.update(metadata or {})
    nbformat.write(nb, path)
    return path


def run_in_local_kernel(path: Path, timeout: float = 300) -> Any:
    """Execute the notebook at ``path`` on a local python3 kernel told which notebook it
    serves (as Jupyter Server tells it); return the executed copy nbclient holds."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env={**os.environ, "JPY_SESSION_NAME": str(path)})
    return nb


def pin_outputs(cell: Any) -> list[Any]:
    return [o["data"][PIN_MIMETYPE] for o in cell.outputs if PIN_MIMETYPE in o.get("data", {})]


def test_pin_then_a_removed_image_is_pulled_back_by_digest(
    registry: Registry, python_image: str, runtime: Any, own_catalog: Path, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    layer = layer_of({"nbc-pin/marker": token.encode()}, tmp_path / "extra.tar")
    base = load_catalog()[python_image].ref
    image = saved_image(base, tmp_path / "saved").with_layer(layer, "ADD nbc-pin /nbc-pin")
    repo = f"nbc-b2-pin/{token[:8]}"
    tagged = registry.add(repo, "1", image)
    ref = f"{registry.address}/{repo}@{digest_of(registry._manifests[(repo, '1')])}"
    name = f"b2pin-{token[:8]}"
    register_user_image(name, {"ref": tagged})  # a tag: what a user's catalog file names
    try:
        nb_file = write_notebook(
            tmp_path / "pinned.ipynb",
            [
                "%load_ext nbcontainers",
                f"%container use {name}",
                "print(open('/nbc-pin/marker').read())",
                "%container pin",
            ],
        )
        nb = run_in_local_kernel(nb_file)
        assert cell_text(nb.cells[2]).strip() == token  # the relay ran in the pulled image
        pinned = {"image": ref}  # the digest the registry gave, not the tag
        # On disk, for whoever opens the file next...
        assert json.loads(nb_file.read_text())["metadata"]["nbcontainers"] == pinned
        # ...and as output, in the copy the frontend (here nbclient) holds and saves.
        assert pin_outputs(nb.cells[3]) == [pinned], nb.cells[3].outputs
        assert "Written to" in cell_text(nb.cells[3]) or any(
            "Written to" in o.get("data", {}).get("text/plain", "") for o in nb.cells[3].outputs
        )
        # The frontend saves its in-memory copy over the file: the output still declares it.
        nbformat.write(nb, nb_file)
        sign(nbformat.read(nb_file, as_version=4))  # as the frontend's save does
        assert "nbcontainers" not in json.loads(nb_file.read_text())["metadata"]
        declaration, note = read_declaration(nb_file, "python")
        assert (declaration.image, note) == (ref, None)

        # A fresh machine state: the pinned image is gone from the engine.
        runtime.remove_image(tagged)
        if runtime.image_info(ref) is not None:
            runtime.remove_image(ref)
        assert runtime.image_info(ref) is None and runtime.image_info(tagged) is None
        config = apply_declaration(LaunchConfig(), declaration, runtime=runtime, wait=240)
        assert runtime.image_info(ref) is not None  # pulled back by its digest
        # And a kernel of it runs in exactly that image.
        km = start(tmp_path, "nbc-python", image=config.image)
        try:
            with connected(km) as kc:
                out, reply = run(kc, "print(open('/nbc-pin/marker').read())")
            assert reply["status"] == "ok" and out.strip() == token
        finally:
            km.shutdown_kernel(now=True)
    finally:
        for gone in (tagged, ref):
            if runtime.image_info(gone) is not None:
                runtime.remove_image(gone)
        shutil.rmtree(tmp_path / "saved", ignore_errors=True)


def test_a_catalog_pin_whose_image_is_gone_gives_the_reason(
    python_image: str, runtime: Any, own_catalog: Path, tmp_path: Path
) -> None:
    """A tagged copy of the catalog's python image (never the catalog's own tag) is used,
    pinned by its ID, then removed: the next start refuses, naming the key and the fixes."""
    token = uuid.uuid4().hex[:8]
    tagged = f"nbc-b2-tagged/python:{token}"
    subprocess.run(["docker", "tag", load_catalog()[python_image].ref, tagged], check=True)
    name = f"b2tag-{token}"
    register_user_image(name, {"ref": tagged})
    try:
        nb_file = write_notebook(
            tmp_path / "tagged.ipynb",
            ["%load_ext nbcontainers", f"%container use {name}", "%container pin"],
        )
        run_in_local_kernel(nb_file)
        info = runtime.image_info(tagged)
        pinned = json.loads(nb_file.read_text())["metadata"]["nbcontainers"]
        assert pinned == {"image": name, "digest": info.id}
        subprocess.run(["docker", "rmi", tagged], check=True, capture_output=True)
        declaration, _ = read_declaration(nb_file, "python")
        with pytest.raises(ConfigError) as caught:
            apply_declaration(LaunchConfig(), declaration, runtime=runtime)
        message = str(caught.value)
        print(message)
        assert f"metadata.nbcontainers.digest (metadata.nbcontainers of {nb_file})" in message
        assert "is not on this engine; that digest is not available here" in message
        assert "`%container pin`" in message and "remove 'digest'" in message
    finally:
        subprocess.run(["docker", "rmi", tagged], capture_output=True, check=False)


def nbc_notebook_installed() -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("nbc-notebook")
    except NoSuchKernel:
        pytest.fail(
            "kernelspec nbc-notebook is not installed by install_kernelspecs (helper B1's part "
            "of issue 24): the nbc-notebook tests need it"
        )


PROBE = "import os, socket; print(os.environ.get('NBCONTAINERS_IMAGE'), socket.gethostname())"


def test_papermill_runs_a_notebook_in_the_image_it_declares(
    torch_image: str, tmp_path: Path
) -> None:
    nbc_notebook_installed()
    source = write_notebook(
        tmp_path / "in.ipynb",
        [PROBE, "import torch; print(torch.__version__)", "print(open('/etc/hostname').read())"],
        {"nbcontainers": {"image": "pytorch-cpu", "cpus": 1}},
    )
    done = subprocess.run(
        [str(BIN / "papermill"), "-k", "nbc-notebook", str(source), str(tmp_path / "out.ipynb")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    image, hostname = cell_text(out.cells[0]).split()
    assert image == "pytorch-cpu" and hostname != socket.gethostname()
    assert cell_text(out.cells[1]).strip()  # torch imports: the image, not the host
    assert cell_text(out.cells[2]).strip() == hostname


def test_a_jupyter_server_session_starts_what_the_notebook_declares(
    torch_image: str, server: tuple[str, str, Path], runtime: Any
) -> None:
    nbc_notebook_installed()
    base, token, root = server
    (root / "sub").mkdir()
    write_notebook(root / "sub" / "nb.ipynb", [PROBE], {"nbcontainers": {"image": "pytorch-cpu"}})
    # What JupyterLab and Notebook 7 send when they open a notebook.
    body = {
        "path": "sub/nb.ipynb",
        "name": "nb.ipynb",
        "type": "notebook",
        "kernel": {"name": "nbc-notebook"},
    }
    request = urllib.request.Request(
        f"{base}/api/sessions?token={token}", json.dumps(body).encode(), method="POST"
    )
    session = json.load(urllib.request.urlopen(request, timeout=120))
    kernel_id = session["kernel"]["id"]
    try:
        (box,) = runtime.list({KERNEL_ID: kernel_id})
        assert box.labels[IMAGE_LABEL] == "pytorch-cpu", box.labels
    finally:
        delete = urllib.request.Request(
            f"{base}/api/sessions/{session['id']}?token={token}", method="DELETE"
        )
        urllib.request.urlopen(delete, timeout=60)
        deadline = time.monotonic() + 30
        while runtime.list({KERNEL_ID: kernel_id}) and time.monotonic() < deadline:
            time.sleep(0.5)


def test_a_declaration_over_the_policys_maximum_is_refused(
    python_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: Any
) -> None:
    """papermill in this process (the policy file is this test's own): the kernel start
    fails with the policy's own message, and no container starts."""
    nbc_notebook_installed()
    import papermill

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"max_mem_limit": "1g"}))
    monkeypatch.setattr("nbcontainers.kernels.policy.POLICY_FILE", policy)
    source = write_notebook(
        tmp_path / "big.ipynb", [PROBE], {"nbcontainers": {"image": "python", "mem_limit": "64g"}}
    )
    before = {s.id for s in runtime.list({KERNEL_ID: None})}
    with pytest.raises(Exception) as caught:
        papermill.execute_notebook(
            str(source), str(tmp_path / "out.ipynb"), kernel_name="nbc-notebook"
        )
    message = str(caught.value)
    print(message)
    assert "mem_limit='64g' is over the maximum '1g' (max_mem_limit" in message
    assert {s.id for s in runtime.list({KERNEL_ID: None})} == before


def test_a_declared_snapshot_folder_is_built_with_progress_then_runs(
    python_image: str,
    runtime: Any,
    own_catalog: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An nbc-notebook kernel (the provisioner, told the notebook as Jupyter Server tells it)
    of a notebook declaring a snapshot folder whose image was never built: built at the start
    with its steps in the log, and the kernel runs in it."""
    nbc_notebook_installed()
    import hashlib
    import logging

    from jupyter_client.manager import KernelManager

    token = uuid.uuid4().hex[:8]
    folder = tmp_path / f"env{token}"
    folder.mkdir()
    base = load_catalog()[python_image].ref
    (folder / "Dockerfile").write_text(
        f"ARG BASE_IMAGE={base}\nFROM ${{BASE_IMAGE}}\nENV NBC_SNAP_MARKER={token}\n"
    )
    (folder / "requirements.lock").write_text("# nothing beyond the base\n")
    (folder / "environment.json").write_text(json.dumps({"kind": "nbcontainers-snapshot"}))
    lock = hashlib.sha256((folder / "requirements.lock").read_bytes()).hexdigest()
    nb_file = write_notebook(
        tmp_path / "snap.ipynb",
        [],
        {"nbcontainers": {"snapshot": folder.name, "lock_sha256": lock}},
    )
    caplog.set_level(logging.INFO)
    env = {**os.environ, "JPY_SESSION_NAME": str(nb_file)}
    # A notebook from elsewhere (not trusted here) may not pick an image from outside the
    # catalog: refused before anything is built.
    km = KernelManager(kernel_name="nbc-notebook")
    with pytest.raises(ConfigError, match=f"jupyter trust {nb_file}"):
        km.start_kernel(cwd=str(tmp_path), env=env)
    assert not any("Building" in r.getMessage() for r in caplog.records)
    sign(nbformat.read(nb_file, as_version=4))  # `jupyter trust`, or the user's own save
    km = KernelManager(kernel_name="nbc-notebook")
    try:
        km.start_kernel(cwd=str(tmp_path), env=env)
        with connected(km) as kc:
            out, reply = run(kc, "import os; print(os.environ['NBC_SNAP_MARKER'])")
        assert reply["status"] == "ok" and out.strip() == token
        image = load_catalog()[f"snapshot-env{token}"]
        assert runtime.image_info(image.ref) is not None
        said = [r.getMessage() for r in caplog.records]
        assert any(f"Building {image.ref}: step" in line for line in said), said
    finally:
        km.shutdown_kernel(now=True)
        for ref in {i.ref for n, i in load_catalog().items() if n == f"snapshot-env{token}"}:
            if runtime.image_info(ref) is not None:
                runtime.remove_image(ref)
