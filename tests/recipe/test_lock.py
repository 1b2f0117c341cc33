"""The lock: which distributions it takes and how each line is written."""

from __future__ import annotations

from pathlib import Path

from nbcontainers.recipe.environment import Package, Snapshot
from nbcontainers.recipe.lock import (
    dependency_closure,
    index_pins,
    is_pytorch_label,
    local_labels,
    lock_line,
    lockable,
    render_lock,
)

PACKAGES = (
    Package("numpy", "2.0.0", "index"),
    Package("pandas", "2.2", "index", requires=("numpy>=1.26", "pytest; extra == 'test'")),
    Package("pytest", "8.0", "index"),
    Package("pip", "24.0", "index"),
    Package("six", "1.17.0", "conda", source="conda-forge::six=1.17.0=py_0"),
    Package("debian-thing", "1", "system"),
)


def test_closure_follows_requirements_but_not_extras() -> None:
    snap = Snapshot(python="3.11", packages=PACKAGES)
    assert [p.name for p in dependency_closure(snap, ["Pandas"])] == ["numpy", "pandas"]


def test_lock_leaves_out_pip_tooling_and_system_packages() -> None:
    assert [p.name for p in lockable(PACKAGES)] == ["numpy", "pandas", "pytest", "six"]
    assert index_pins(PACKAGES) == [
        ("numpy", "2.0.0"),
        ("pandas", "2.2"),
        ("pytest", "8.0"),
        ("six", "1.17.0"),
    ]


def test_local_labels() -> None:
    lock = [Package("torch", "2.3.0+cpu", "index"), Package("x", "1+cu121", "index")]
    assert local_labels(lock) == ["cpu", "cu121"]
    assert is_pytorch_label("cpu") and is_pytorch_label("cu121") and not is_pytorch_label("g1")


def test_lock_lines() -> None:
    p = Package("pkg", "1.0", "url", source="https://h/pkg-1.tar.gz#sha256=abc")
    assert lock_line(p, None, []) == "pkg @ https://h/pkg-1.tar.gz#sha256=abc"
    assert lock_line(p, None, ["abc"]) == ("pkg @ https://h/pkg-1.tar.gz \\\n    --hash=sha256:abc")
    assert lock_line(Package("w", "1", "local"), "w-1-py3-none-any.whl", []) == (
        "w @ file:///opt/nbc/wheels/w-1-py3-none-any.whl"
    )


def test_hashes_on_every_line_or_on_none(tmp_path: Path) -> None:
    lock = [Package("numpy", "2.0.0", "index"), Package("w", "1", "editable")]
    wheel = tmp_path / "w-1-py3-none-any.whl"
    wheel.write_bytes(b"")
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    text = render_lock(lock, {("numpy", "2.0.0"): ["a"]}, ["# t"], wheel_files={"w": wheel})
    assert text == (
        "# t\n# every line carries its files' sha256: pip installs in hash mode\n"
        "numpy==2.0.0 \\\n    --hash=sha256:a\n"
        f"w @ file:///opt/nbc/wheels/{wheel.name} \\\n    --hash=sha256:{empty}\n"
    )
    text = render_lock(lock, {}, ["# t"], wheel_files={"w": wheel}, no_hash_reason="why")
    assert text == (
        "# t\n# no hash lines: not every distribution has a published hash (why)\n"
        f"numpy==2.0.0\nw @ file:///opt/nbc/wheels/{wheel.name}\n"
    )
