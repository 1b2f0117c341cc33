"""metadata.nbcontainers read, checked and applied (kernels/declared.py), without an engine:
every malformed key is a ConfigError naming the key and the fix, never another image."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.errors import ConfigError
from nbcontainers.kernels import declared
from nbcontainers.kernels.declared import (
    NOTEBOOK_IMAGE,
    PIN_MIMETYPE,
    Declaration,
    apply_declaration,
    declaration_from_metadata,
    notebook_path,
    read_declaration,
)
from nbcontainers.kernels.plan import LaunchConfig
from nbcontainers.runtimes.fake import FakeRuntime

from .saving import mid_save

DIGEST = "sha256:" + "ab" * 32
REF = f"registry.example.org/team/img@{DIGEST}"


@pytest.fixture(autouse=True)
def own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user catalog file of the test's own (snapshot and digest images are registered)."""
    folder = tmp_path / "config"
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(folder))
    monkeypatch.setattr("nbcontainers.kernels.policy.POLICY_FILE", tmp_path / "no-policy.json")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))  # its trust database
    return folder


def notebook(path: Path, metadata: dict[str, Any] | None = None, cells: Any = ()) -> Path:
    path.write_text(
        json.dumps(
            {"nbformat": 4, "nbformat_minor": 5, "metadata": metadata or {}, "cells": list(cells)}
        )
    )
    return path


def parse(value: Any, folder: Path = Path("/nb")) -> Declaration:
    return declaration_from_metadata(value, folder, "metadata.nbcontainers of /nb/x.ipynb")


def test_the_kernelspec_value_is_fixed() -> None:
    assert NOTEBOOK_IMAGE == "@notebook"


def test_valid_declarations() -> None:
    d = parse({"image": "pytorch-cpu", "gpus": 1, "mem_limit": "8G", "cpus": 2})
    assert (d.image, d.kind, d.gpus, d.mem_limit, d.cpus) == (
        "pytorch-cpu",
        "catalog",
        1,
        "8g",
        2.0,
    )
    assert parse({"image": REF}).kind == "digest"
    assert parse({"image": REF, "digest": DIGEST}).digest == DIGEST
    snap = parse({"snapshot": "env", "lock_sha256": "cd" * 32}, Path("/work/nb"))
    assert (snap.kind, snap.snapshot) == ("snapshot", Path("/work/nb/env"))
    assert (
        parse({"image": "python", "digest": DIGEST.upper().replace("SHA", "sha")}).digest == DIGEST
    )


@pytest.mark.parametrize(
    ("value", "key", "fix"),
    [
        ({"imgae": "python"}, "imgae", "Did you mean 'image'?"),
        ({"image": "org/img:1.0"}, "image", "repo@sha256"),
        ({"image": "ubuntu:latest"}, "image", "pinned by digest"),
        ({"image": ""}, "image", "catalog image"),
        ({"image": 3}, "image", "catalog image"),
        ({"image": "Py Thon"}, "image", "lowercase"),
        ({"image": "python", "snapshot": "env"}, "snapshot", "Keep one"),
        ({"image": "python", "digest": "sha256:abc"}, "digest", "sha256:<64 hex digits>"),
        ({"image": "python", "digest": "ab" * 32}, "digest", "sha256:<64 hex digits>"),
        ({"snapshot": "env", "digest": DIGEST}, "digest", "lock_sha256"),
        ({"image": REF, "digest": "sha256:" + "cd" * 32}, "digest", "Remove 'digest'"),
        ({"image": "python", "lock_sha256": "cd" * 32}, "lock_sha256", "'snapshot'"),
        ({"snapshot": "env", "lock_sha256": "xyz"}, "lock_sha256", "64 hex"),
        ({"image": "python", "gpus": True}, "gpus", "'all', a count"),
        ({"image": "python", "gpus": -3}, "gpus", "'all', a count"),
        ({"image": "python", "mem_limit": "lots"}, "mem_limit", "'8g'"),
        ({"image": "python", "mem_limit": "0"}, "mem_limit", "'8g'"),
        ({"image": "python", "cpus": -1}, "cpus", "like 2"),
        ({"image": "python", "cpus": "2"}, "cpus", "like 2"),
        ({"image": "python", "cpus": float("nan")}, "cpus", "like 2"),
        ({"image": "python", "cpus": True}, "cpus", "like 2"),
        ({"image": "python", "cpus": 0.001}, "cpus", "like 2"),
    ],
)
def test_malformed_keys_name_the_key_and_the_fix(value: Any, key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(value)
    message = str(caught.value)
    assert key in message and fix in message, message
    assert "/nb/x.ipynb" in message  # which notebook


@pytest.mark.parametrize("value", [["python"], "python", 3, None])
def test_the_declaration_must_be_an_object(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"must be an object like \{\"image\": \"python\"\}"):
        parse(value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*declared.KEYS, "x"]), JSON, max_size=5) | JSON)
def test_any_json_is_a_declaration_or_a_config_error(value: Any) -> None:
    try:
        parse(value)
    except ConfigError as exc:
        assert "metadata.nbcontainers" in str(exc)


def test_no_notebook_and_no_declaration_fall_back_in_one_line(tmp_path: Path) -> None:
    decl, note = read_declaration(None, "python")
    assert decl.image == "python" and note is not None and "\n" not in note
    assert "JPY_SESSION_NAME" in note and "'python'" in note
    plain = notebook(tmp_path / "plain.ipynb", {"kernelspec": {"name": "nbc-notebook"}})
    decl, note = read_declaration(plain, "python")
    assert decl.image == "python" and note is not None and "\n" not in note
    assert str(plain) in note and "declares no container environment" in note


def test_a_declaration_is_read_with_no_note(tmp_path: Path) -> None:
    nb = notebook(tmp_path / "nb.ipynb", {"nbcontainers": {"image": "pytorch-cpu", "cpus": 1}})
    decl, note = read_declaration(nb, "python")
    assert (decl.image, decl.cpus, note) == ("pytorch-cpu", 1.0, None)
    assert str(nb) in decl.source


def test_resources_alone_run_the_default_image_and_say_so(tmp_path: Path) -> None:
    nb = notebook(tmp_path / "nb.ipynb", {"nbcontainers": {"mem_limit": "1g"}})
    decl, note = read_declaration(nb, "python")
    assert (decl.image, decl.mem_limit) == ("python", "1g")
    assert note is not None and "no image" in note


def test_a_broken_notebook_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"Cannot read notebook .*bad\.ipynb"):
        read_declaration(bad, "python")
    nb = notebook(tmp_path / "nb.ipynb", {"nbcontainers": {"image": "pytorch-cpu", "gpu": 1}})
    with pytest.raises(ConfigError, match=r"Unknown key 'gpu'.*Did you mean 'gpus'"):
        read_declaration(nb, "python")


def test_a_notebook_read_while_the_frontend_saves_it_is_read_again(tmp_path: Path) -> None:
    """Jupyter Server rewrites a notebook in place when it saves: a kernel started meanwhile
    read it cut and failed with "Cannot read notebook" (the old code at once)."""
    whole = notebook(tmp_path / "nb.ipynb", {"nbcontainers": {"image": "pytorch-cpu"}})
    with mid_save(whole):
        decl, note = read_declaration(whole, "python")
    assert (decl.image, note) == ("pytorch-cpu", None)


def test_the_pin_output_declares_when_the_metadata_was_overwritten(tmp_path: Path) -> None:
    """A frontend that saved its in-memory copy over the pinned file keeps the pin's output."""
    output = {
        "output_type": "display_data",
        "metadata": {},
        "data": {"text/plain": "pinned", PIN_MIMETYPE: {"image": "pytorch-cpu", "cpus": 1}},
    }
    cell = {"cell_type": "code", "source": "%container pin", "metadata": {}, "outputs": [output]}
    nb = notebook(tmp_path / "nb.ipynb", {}, [cell])
    decl, note = read_declaration(nb, "python")
    assert (decl.image, note) == ("pytorch-cpu", None)
    assert "%container pin" in decl.source
    # The metadata, where present, wins.
    nb = notebook(tmp_path / "nb2.ipynb", {"nbcontainers": {"image": "python"}}, [cell])
    assert read_declaration(nb, "python")[0].image == "python"


def test_notebook_path_from_what_jupyter_server_passes(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    nb = notebook(sub / "nb.ipynb")
    # JupyterLab/Notebook 7 name the session: the server passes cwd/name, absolute.
    assert notebook_path({"JPY_SESSION_NAME": str(nb)}, str(sub)) == nb
    # No name: the API path, relative to the server's root; the cwd is the notebook's folder.
    assert notebook_path({"JPY_SESSION_NAME": "sub/nb.ipynb"}, str(sub)) == nb
    assert notebook_path({"JPY_SESSION_NAME": "nb.ipynb"}, str(sub)) == nb
    assert notebook_path({"JPY_SESSION_NAME": "RTC:sub/nb.ipynb"}, str(sub)) == nb
    # A console's session, a missing file, or nothing at all: no notebook.
    assert notebook_path({"JPY_SESSION_NAME": "console-1-abc"}, str(sub)) is None
    assert notebook_path({"JPY_SESSION_NAME": str(sub / "gone.ipynb")}, str(sub)) is None
    assert notebook_path({}, str(sub)) is None


def test_notebook_path_finds_papermills_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """papermill names no notebook to the kernel manager: its client up the stack does."""
    import nbformat
    from nbclient import NotebookClient

    nb_file = notebook(tmp_path / "in.ipynb")
    nb = nbformat.read(nb_file, as_version=4)
    nb.metadata["papermill"] = {"input_path": "in.ipynb"}
    monkeypatch.chdir(tmp_path)
    client = NotebookClient(nb)

    def start(self: NotebookClient) -> Path | None:
        return notebook_path({}, None)

    assert start(client) == nb_file
    # From a worker thread (no coroutine frames): the client whose kernel manager is the
    # provisioner's, never another one alive in the process, such as a client whose start
    # failed and that a kept traceback holds (a starting client, to any heuristic).
    import threading

    other = notebook(tmp_path / "other.ipynb")
    stale = NotebookClient(nbformat.read(other, as_version=4))
    stale.nb.metadata["papermill"] = {"input_path": "other.ipynb"}
    stale.km = object()  # type: ignore[assignment]
    client.km = object()  # type: ignore[assignment]
    found: list[Path | None] = []

    def look() -> None:
        found.extend([notebook_path({}, None, client.km), notebook_path({}, None, stale.km)])
        found.append(notebook_path({}, None))  # no kernel manager: no guess

    thread = threading.Thread(target=look)
    thread.start()
    thread.join()
    assert found == [nb_file, other.resolve(), None]


def fake() -> FakeRuntime:
    return FakeRuntime(images=[i.ref for i in load_catalog(include_user=False).values()])


def test_apply_sets_image_and_resources() -> None:
    config = apply_declaration(
        LaunchConfig(mem_limit="2g"),
        parse({"image": "pytorch-cpu", "mem_limit": "1g", "cpus": 1.5}),
        runtime=fake(),
    )
    assert isinstance(config, LaunchConfig)
    assert (config.image, config.mem_limit, config.cpus) == ("pytorch-cpu", "1g", 1.5)
    # Unset resources keep the kernelspec's own settings.
    kept = apply_declaration(
        LaunchConfig(mem_limit="2g"), parse({"image": "python"}), runtime=fake()
    )
    assert kept.mem_limit == "2g"


def test_unknown_image_is_refused_with_did_you_mean() -> None:
    with pytest.raises(ConfigError) as caught:
        apply_declaration(LaunchConfig(), parse({"image": "pytorch-cp"}), runtime=fake())
    message = str(caught.value)
    assert "metadata.nbcontainers.image" in message and "Did you mean 'pytorch-cpu'?" in message


def test_over_the_policys_maximum_is_refused_by_the_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"max_mem_limit": "2g", "max_cpus": 1}))
    os.chmod(policy, 0o644)
    monkeypatch.setattr("nbcontainers.kernels.policy.POLICY_FILE", policy)
    runtime = fake()
    with pytest.raises(
        ConfigError, match=r"mem_limit='4g' is over the maximum '2g' \(max_mem_limit"
    ):
        apply_declaration(
            LaunchConfig(), parse({"image": "python", "mem_limit": "4g"}), runtime=runtime
        )
    with pytest.raises(ConfigError, match=r"cpus=2 is over the maximum 1 \(max_cpus"):
        apply_declaration(LaunchConfig(), parse({"image": "python", "cpus": 2}), runtime=runtime)
    within = apply_declaration(
        LaunchConfig(), parse({"image": "python", "mem_limit": "2g"}), runtime=runtime
    )
    assert within.mem_limit == "2g"


def test_a_refused_image_is_never_pulled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"allowed_images": ["python"]}))
    monkeypatch.setattr("nbcontainers.kernels.policy.POLICY_FILE", policy)
    runtime = FakeRuntime(registry=[REF])
    with pytest.raises(ConfigError, match="is not allowed on this host"):
        apply_declaration(LaunchConfig(), parse({"image": REF}), runtime=runtime)
    assert runtime.image_info(REF) is None


def test_a_digest_is_pulled_or_refused_with_the_reason() -> None:
    runtime = FakeRuntime(registry=[REF])
    config = apply_declaration(LaunchConfig(), parse({"image": REF}), runtime=runtime)
    assert runtime.image_info(REF) is not None
    assert load_catalog()[config.image].ref == REF  # a catalog name for the kernel
    gone = REF.replace("ab" * 32, "ef" * 32)
    with pytest.raises(ConfigError) as caught:
        apply_declaration(LaunchConfig(), parse({"image": gone}), runtime=FakeRuntime())
    message = str(caught.value)
    assert "metadata.nbcontainers.image" in message and "cannot get" in message
    assert "still holds that digest" in message


def test_a_catalog_image_pinned_by_id_must_be_that_image() -> None:
    runtime = fake()
    image = load_catalog()["python"]
    info = runtime.image_info(image.ref)
    assert info is not None
    apply_declaration(
        LaunchConfig(), parse({"image": "python", "digest": info.id}), runtime=runtime
    )
    with pytest.raises(ConfigError) as caught:
        apply_declaration(
            LaunchConfig(), parse({"image": "python", "digest": DIGEST}), runtime=runtime
        )
    message = str(caught.value)
    assert "metadata.nbcontainers.digest" in message and "not available here" in message
    assert "%container pin" in message


def test_gpus_on_a_host_without_them_name_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbcontainers.hostgpus import HostGPUs

    monkeypatch.setattr(
        "nbcontainers.kernels.gpu_request.detect_gpus", lambda: HostGPUs(detail="no driver")
    )
    with pytest.raises(ConfigError) as caught:
        apply_declaration(LaunchConfig(), parse({"image": "python", "gpus": 1}), runtime=fake())
    assert "metadata.nbcontainers.gpus" in str(caught.value) and "no NVIDIA GPU" in str(
        caught.value
    )


def test_a_snapshot_that_changed_since_the_pin_is_refused(tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.mkdir()
    (env / "Dockerfile").write_text("FROM scratch\n")
    (env / "requirements.lock").write_text("numpy==2.0.0\n")
    pinned = hashlib.sha256(b"numpy==1.26.0\n").hexdigest()
    with pytest.raises(ConfigError, match="changed since `%container pin`"):
        apply_declaration(
            LaunchConfig(),
            parse({"snapshot": "env", "lock_sha256": pinned}, tmp_path),
            runtime=fake(),
        )
    with pytest.raises(ConfigError, match="is not a snapshot folder"):
        apply_declaration(LaunchConfig(), parse({"snapshot": "nothere"}, tmp_path), runtime=fake())


def sign(path: Path) -> None:
    """What Jupyter Server does when the user saves a notebook: trust it in their database."""
    import nbformat
    from nbformat.sign import NotebookNotary

    NotebookNotary().sign(nbformat.read(path, as_version=4))


@pytest.mark.parametrize("declared", [{"image": REF}, {"snapshot": "env"}])
def test_images_from_outside_the_catalog_need_a_trusted_notebook(
    tmp_path: Path, declared: dict[str, Any]
) -> None:
    """Opening a notebook starts its kernel: one from elsewhere must not pick the image whose
    code then runs as the user with the folder mounted; `jupyter trust` is the way to say yes."""
    nb = notebook(tmp_path / "nb.ipynb", {"nbcontainers": declared})
    with pytest.raises(ConfigError) as caught:
        read_declaration(nb, "python")
    message = str(caught.value)
    assert f"jupyter trust {nb}" in message and "not in your catalog" in message, message
    sign(nb)
    assert read_declaration(nb, "python")[0].kind in ("digest", "snapshot")
    # A catalog image is the user's (or admin's) own choice: no trust needed.
    plain = notebook(tmp_path / "plain.ipynb", {"nbcontainers": {"image": "pytorch-cpu"}})
    assert read_declaration(plain, "python")[0].image == "pytorch-cpu"


def test_a_notebook_papermill_is_asked_to_run_needs_no_signature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb_file = notebook(tmp_path / "in.ipynb", {"nbcontainers": {"image": REF}})
    nb = nbformat.read(nb_file, as_version=4)
    nb.metadata["papermill"] = {"input_path": str(nb_file)}
    client = NotebookClient(nb)

    def start(self: NotebookClient) -> Declaration:
        return read_declaration(nb_file, "python")[0]

    assert start(client).image == REF
