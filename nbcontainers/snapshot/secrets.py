"""Secret scanning of what a snapshot copies into its image: the notebook folder's files and
the wheels built from local packages, scanned with detect-secrets (and for credentials in URLs)
before anything is written. A hit stops the snapshot, naming the file and the line, never the
secret, and saying how to leave the file out (``.nbcignore``) or mark a false alarm.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SnapshotError
from ..recipe.redact import has_credentials

__all__ = ["IGNORE_FILE", "Finding", "ignore_patterns", "is_ignored", "refuse", "scan_project"]

IGNORE_FILE = ".nbcignore"
URL_CREDENTIAL = "a credential in a URL"
ALLOWLIST = "# pragma: allowlist secret"
# detect-secrets' plugins but these: the entropy ones flag every plotted PNG and every sha256
# a notebook holds, and a public IP address is no secret. Named keys (SECRET_KEY = "…",
# password=…) and every known token format (AWS, GitHub, PyPI, Slack, JWT, private keys…) stay.
_SKIPPED_PLUGINS = {"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"}
_WORD = re.compile(r"[a-z_]+")
# Members of a wheel worth reading: text a package ships (code, configuration, data).
_TEXT_SUFFIXES = {
    ".py", ".pyi", ".txt", ".cfg", ".ini", ".toml", ".json", ".yaml", ".yml", ".env", ".md",
    ".sh", ".conf", ".properties", ".pem", ".key", ".ipynb", ".rst", ".xml", ".csv",
}  # fmt: skip


@dataclass(frozen=True)
class Finding:
    """One line that looks like it holds a secret: where it is and what it looks like."""

    where: str  # "settings.py:2", "analysis.ipynb: cell 3, line 1", "x.whl: pkg/conf.py:4"
    kinds: tuple[str, ...]  # detect-secrets' names ("Secret Keyword"), URL_CREDENTIAL
    in_wheel: bool = False


def ignore_patterns(folder: Path) -> list[str]:
    """The names and globs in ``folder``'s ``.nbcignore`` (one a line, ``#`` comments)."""
    try:
        text = (folder / IGNORE_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    lines = (line.strip() for line in text.splitlines())
    return [line.removeprefix("/") for line in lines if line and not line.startswith("#")]


def is_ignored(relative: str, patterns: Sequence[str]) -> bool:
    """Whether a file at ``relative`` (a POSIX path in the notebook's folder) is left out."""
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(relative, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


@contextmanager
def _detect_secrets() -> Iterator[Any]:
    """detect-secrets configured for snapshots; yields its ``SecretsCollection`` class.

    Imported here, not at module level: it costs half a second and only a snapshot needs it.
    """
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import transient_settings

    classes: list[Any] = list(get_mapping_from_secret_type_to_class().values())
    plugins = [{"name": c.__name__} for c in classes if c.__name__ not in _SKIPPED_PLUGINS]
    with transient_settings({"plugins_used": plugins}):
        yield SecretsCollection


def _scan_file(collection_class: Any, path: Path) -> dict[int, list[str]]:
    """line number -> what was found there, for one file on disk."""
    found: dict[int, list[str]] = {}
    collection = collection_class()
    collection.scan_file(str(path))
    for _, secret in collection:
        # `"imagePullSecrets": "name"`, `secret_field = "token_name"`: the keyword detector
        # reads any lower-case word beside such a key as its value. A word is a name, not a
        # secret (a real password or key has digits, capitals or symbols: `hunter2` stays).
        if secret.type == "Secret Keyword" and _WORD.fullmatch(secret.secret_value or ""):
            continue
        found.setdefault(secret.line_number, []).append(secret.type)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for number, line in enumerate(lines, 1):
        # Our own check beside the scanner's: a token as a URL's user name, or a presigned
        # URL's signature, matches none of its patterns.
        if has_credentials(line) and ALLOWLIST not in line:
            found.setdefault(number, []).append(URL_CREDENTIAL)
    return found


def _findings(where: str, found: dict[int, list[str]], in_wheel: bool = False) -> list[Finding]:
    return [
        Finding(f"{where}:{line}", tuple(dict.fromkeys(found[line])), in_wheel)
        for line in sorted(found)
    ]


def _notebook_text(path: Path, scratch: Path) -> tuple[list[Path], list[list[str]]]:
    """A notebook as two scannable files, code (``.py``) and everything else (markdown,
    outputs' text), with where each of their lines is in the notebook ("cell 2, line 3")."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells") or []
    except (OSError, ValueError, AttributeError):
        return [path], [[]]  # not JSON: scanned as the text it is
    code: list[tuple[str, str]] = []
    text: list[tuple[str, str]] = []

    def lines_of(value: Any) -> list[str]:
        joined = "".join(value) if isinstance(value, list) else str(value or "")
        return joined.splitlines()

    for index, cell in enumerate(cells, 1):
        target = code if cell.get("cell_type") == "code" else text
        for number, line in enumerate(lines_of(cell.get("source")), 1):
            target.append((line, f"cell {index}, line {number}"))
        outputs = [
            value
            for output in cell.get("outputs") or []
            for value in [
                output.get("text"),
                output.get("evalue"),
                *(output.get("traceback") or []),
                *(
                    value
                    for mime, value in (output.get("data") or {}).items()
                    if mime.startswith("text/") or mime.endswith("json")
                ),
            ]
            if value
        ]
        out_lines = [line for value in outputs for line in lines_of(value)]
        for number, line in enumerate(out_lines, 1):
            text.append((line, f"cell {index}, output line {number}"))
    files, places = [], []
    for name, entries in (("cells.py", code), ("text.txt", text)):
        file = scratch / name
        file.write_text("".join(line + "\n" for line, _ in entries), encoding="utf-8")
        files.append(file)
        places.append([place for _, place in entries])
    return files, places


def scan_project(files: Iterable[tuple[str, Path]], wheels: Iterable[Path]) -> list[Finding]:
    """Scan the project ``files`` (relative name, path) and the ``wheels`` of local packages
    that a snapshot copies into its image."""
    findings: list[Finding] = []
    with _detect_secrets() as collection_class, tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        for name, path in files:
            if path.suffix == ".ipynb":
                findings += _scan_notebook(collection_class, name, path, scratch)
            else:
                findings += _findings(name, _scan_file(collection_class, path))
        for wheel in wheels:
            findings += _scan_wheel(collection_class, wheel, scratch)
    return findings


def _scan_notebook(collection_class: Any, name: str, path: Path, scratch: Path) -> list[Finding]:
    """A notebook's findings, each named by cell and line ("cell 2, output line 1")."""
    findings = []
    for part, places in zip(*_notebook_text(path, scratch), strict=True):
        for line, kinds in sorted(_scan_file(collection_class, part).items()):
            where = f"{name}: {places[line - 1]}" if places else f"{name}:{line}"
            findings.append(Finding(where, tuple(dict.fromkeys(kinds))))
    return findings


def _scan_wheel(collection_class: Any, wheel: Path, scratch: Path) -> list[Finding]:
    findings: list[Finding] = []
    if not zipfile.is_zipfile(wheel):
        # Not an archive after all: what is copied is these bytes, so they are what is scanned.
        return _findings(wheel.name, _scan_file(collection_class, wheel), in_wheel=True)
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            # RECORD lists hashes of the wheel's own files: no secret, only noise.
            if Path(member).suffix not in _TEXT_SUFFIXES or member.endswith(".dist-info/RECORD"):
                continue
            # Extracted under a fixed name: a member's own path never decides where we write.
            copy = scratch / ("member" + Path(member).suffix)
            copy.write_bytes(archive.read(member))
            found = _scan_file(collection_class, copy)
            findings += _findings(f"{wheel.name}: {member}", found, in_wheel=True)
    return findings


def refuse(findings: Sequence[Finding], project: Path | None) -> None:
    """Raise the error that stops a snapshot over ``findings`` (nothing when there are none):
    file and line of each, never the secret, and how to go on."""
    if not findings:
        return
    listed = "\n".join(f"  {f.where} ({', '.join(f.kinds)})" for f in findings[:20])
    if len(findings) > 20:
        listed += f"\n  … and {len(findings) - 20} more"
    fixes = [
        "Keep secrets out of the image: read them at run time from an environment variable or "
        "a file the image does not hold."
    ]
    if any(not f.in_wheel for f in findings):
        ignore = (project / IGNORE_FILE) if project else Path(IGNORE_FILE)
        fixes.append(
            f"To leave a file of the notebook's folder out of the snapshot, add its name to "
            f"{ignore} (one name or glob a line, e.g. `settings.py`)."
        )
    if any(f.in_wheel for f in findings):
        fixes.append(
            "A wheel is built from a local package's source: remove the secret there, then "
            "reinstall the package."
        )
    fixes.append(f"If a line holds no secret, end it with `{ALLOWLIST}`. Then snapshot again.")
    raise SnapshotError(
        "Found what looks like a secret in files the snapshot would copy into its image; "
        "nothing was written:\n" + listed + "\n" + " ".join(fixes)
    )
