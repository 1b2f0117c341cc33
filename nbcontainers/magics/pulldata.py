"""The data-only format `%container pull` brings variables back in: JSON for plain values, .npy
for arrays (read without pickle), DataFrames and Series as columns of those.

The container is not trusted (its image may come from any registry), so the notebook's side
runs no code the container chose: it never unpickles unless the user asked for it
(``--pickle``), it reads only files whose names it chose itself in its own transfer folder,
opened without following links, and it deletes nothing else. ``encode_to`` runs in the
container (sent as source: standard library only, numpy/pandas imported when the value is
one; it lives in :mod:`nbcontainers.inkernel.pullencode`); :func:`decode_from` and
:func:`remove_base` run in the notebook.

The manifest ``<base>.json`` is the value as JSON, where what JSON lacks is a tagged object
``{"__nbc__": KIND, ...}``: tuple, set, frozenset, dict with non-string keys, bytes,
bytearray, complex, ndarray (file ``<base>.<i>.npy``), numpy scalar, DataFrame, Series,
Index. Anything else is refused in the container (``NotData``), unless
pickle was allowed; then ``<base>.pkl`` (protocol 5, buffers in ``<base>.<i>.buf``).
"""

from __future__ import annotations

import json
import mmap
import os
import pickle
import re
import stat
from typing import Any

__all__ = [
    "MAX_MANIFEST",
    "PULL_TYPES",
    "BadTransfer",
    "decode_from",
    "new_base",
    "remove_base",
]

# What the notebook will parse as a manifest at most: a value this large should be an array.
MAX_MANIFEST = 1 << 30
# What the messages name as movable without pickle.
PULL_TYPES = (
    "numpy arrays and scalars, pandas DataFrames/Series/Index, str, int, float, complex, "
    "bool, None, bytes, and lists, tuples, sets and dicts of these"
)
_BASE = re.compile(r"^[0-9a-f]{32}$")


class BadTransfer(Exception):
    """What the container left is not a valid transfer (or not where it must be)."""


def new_base() -> str:
    """A file-name stem the notebook chooses for one variable."""
    import uuid

    return uuid.uuid4().hex


# -- the notebook's side ----------------------------------------------------------------------


def _check_base(base: str) -> None:
    if not _BASE.match(base):  # ours, always: a programming error otherwise
        raise ValueError(f"not a transfer base name: {base!r}")


def _open_dir(folder: str) -> int:
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _open_file(dir_fd: int, name: str) -> int:
    """``name`` in the folder, read-only, never through a link, never a FIFO or device."""
    try:
        fd = os.open(
            name,
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY,
            dir_fd=dir_fd,
        )
    except FileNotFoundError:
        raise BadTransfer(f"{name} is missing") from None
    except OSError as exc:  # ELOOP: a link where the file should be
        raise BadTransfer(f"{name} can't be opened as a plain file ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BadTransfer(f"{name} is not a plain file")
    return fd


def _read_small(dir_fd: int, name: str) -> bytes:
    fd = _open_file(dir_fd, name)
    with os.fdopen(fd, "rb") as f:
        if os.fstat(fd).st_size > MAX_MANIFEST:
            raise BadTransfer(f"{name} is larger than {MAX_MANIFEST >> 20} MiB")
        return f.read(MAX_MANIFEST + 1)


def _mapped(dir_fd: int, name: str) -> Any:
    """A file's bytes as a copy-on-write mapping (writable, no read copy)."""
    fd = _open_file(dir_fd, name)
    try:
        size = os.fstat(fd).st_size
        return mmap.mmap(fd, size, access=mmap.ACCESS_COPY) if size else bytearray()
    finally:
        os.close(fd)  # the mapping outlives the descriptor


def _load_npy(dir_fd: int, name: str) -> Any:
    """An .npy file as an array over a copy-on-write mapping; object dtypes are refused (they
    would need pickle)."""
    import numpy as np
    from numpy.lib import format as npy

    buf = _mapped(dir_fd, name)
    view = memoryview(buf)
    try:
        import io

        head = io.BytesIO(view[: min(len(view), 1 << 16)])
        version = npy.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(head)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy.read_array_header_2_0(head)
        else:
            raise BadTransfer(f"{name}: unknown .npy version {version}")
    except ValueError as exc:
        raise BadTransfer(f"{name} is not an .npy file ({exc})") from None
    if dtype.hasobject:
        raise BadTransfer(f"{name} holds Python objects (dtype {dtype}), which need pickle")
    offset = head.tell()
    count = 1
    for n in shape:
        count *= n
    if offset + count * dtype.itemsize > len(view):
        raise BadTransfer(f"{name} is shorter than its header says")
    if count == 0:
        return np.empty(shape, dtype=dtype)
    return np.ndarray(shape, dtype=dtype, buffer=buf, offset=offset, order="F" if fortran else "C")


class _Decoder:
    """Builds the notebook's value from a manifest; reads only ``<base>.<i>.npy`` files."""

    def __init__(self, dir_fd: int, base: str) -> None:
        self.dir_fd, self.base = dir_fd, base

    def array(self, node: dict[str, Any]) -> Any:
        index = node.get("file")
        if type(index) is not int or index < 0:
            raise BadTransfer(f"bad file number {index!r}")
        return _load_npy(self.dir_fd, f"{self.base}.{index}.npy")

    def column(self, node: Any) -> Any:
        import numpy as np
        import pandas as pd

        kind = self.kind(node)
        if kind == "categorical":
            categories = self.column(node["categories"])
            codes = self.array(node["codes"])
            return pd.Categorical.from_codes(
                codes, categories=categories, ordered=bool(node.get("ordered"))
            )
        if kind == "datetimetz":
            utc = pd.DatetimeIndex(self.array(node["values"])).tz_localize("UTC")
            return utc.tz_convert(str(node["tz"]))
        if kind != "column":
            raise BadTransfer(f"a {kind!r} where a column belongs")
        if "values" in node:
            values = self.array(node["values"])
            if str(values.dtype) != str(node["dtype"]):
                raise BadTransfer(f"a column says {node['dtype']} but holds {values.dtype}")
            return values
        items = [self.value(x) for x in self.listed(node.get("items"))]
        try:  # a dtype this pandas doesn't know (another version there) keeps the objects
            dtype = pd.api.types.pandas_dtype(str(node["dtype"]))
        except TypeError:
            dtype = np.dtype(object)
        if isinstance(dtype, np.dtype):  # "object"; or "str", which pandas 2 reads as <U0
            out = np.empty(len(items), dtype=object)
            out[:] = items
            return out
        return pd.array(items, dtype=dtype)

    def index(self, node: Any) -> Any:
        import pandas as pd

        kind = self.kind(node)
        if kind == "range":
            start, stop, step = (int(x) for x in self.listed(node["args"]))
            return pd.RangeIndex(start, stop, step, name=self.value(node.get("name")))
        if kind == "multi":
            levels = [self.column(level) for level in self.listed(node["levels"])]
            return pd.MultiIndex.from_arrays(levels, names=self.value(node.get("names")))
        if kind == "index":
            return pd.Index(self.column(node["values"]), name=self.value(node.get("name")))
        raise BadTransfer(f"a {kind!r} where an index belongs")

    @staticmethod
    def kind(node: Any) -> str:
        if not isinstance(node, dict) or not isinstance(node.get("__nbc__"), str):
            raise BadTransfer("a tagged object was expected")
        return str(node["__nbc__"])

    @staticmethod
    def listed(node: Any) -> list[Any]:
        if not isinstance(node, list):
            raise BadTransfer("a list was expected")
        return node

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.value(x) for x in node]
        if not isinstance(node, dict):
            return node  # str, int, float, bool, None: what json gives
        if "__nbc__" not in node:
            return {k: self.value(v) for k, v in node.items()}
        kind = self.kind(node)
        if kind in ("tuple", "set", "frozenset"):
            items = [self.value(x) for x in self.listed(node.get("items"))]
            return {"tuple": tuple, "set": set, "frozenset": frozenset}[kind](items)
        if kind == "dict":
            return {self.value(k): self.value(v) for k, v in map(self.pair, node.get("items", []))}
        if kind in ("bytes", "bytearray"):
            import base64

            raw = base64.b64decode(str(node.get("b64", "")), validate=True)
            return raw if kind == "bytes" else bytearray(raw)
        if kind == "complex":
            return complex(float(node["re"]), float(node["im"]))
        if kind == "ndarray":
            return self.array(node)
        if kind == "scalar":
            return self.array(node)[()]
        if kind == "dataframe":
            import pandas as pd

            columns = self.index(node["columns"])
            data = [self.column(c) for c in self.listed(node["data"])]
            if len(data) != len(columns):
                raise BadTransfer("a DataFrame whose columns and data differ in number")
            frame = pd.DataFrame(dict(enumerate(data)), index=self.index(node["index"]), copy=False)
            frame.columns = columns
            return frame
        if kind == "series":
            import pandas as pd

            return pd.Series(
                self.column(node["data"]),
                index=self.index(node["index"]),
                name=self.value(node.get("name")),
                copy=False,
            )
        if kind in ("range", "multi", "index"):
            return self.index(node)
        raise BadTransfer(f"unknown kind {kind!r}")

    @staticmethod
    def pair(item: Any) -> tuple[Any, Any]:
        if not isinstance(item, list) or len(item) != 2:
            raise BadTransfer("a dict item must be a [key, value] pair")
        return item[0], item[1]


def decode_from(folder: str, base: str, allow_pickle: bool = False) -> Any:
    """The value :func:`encode_to` wrote for ``base`` in ``folder``. Raises
    :class:`BadTransfer` for anything else; unpickles only when ``allow_pickle``."""
    _check_base(base)
    dir_fd = _open_dir(folder)
    try:
        try:
            manifest = json.loads(_read_small(dir_fd, base + ".json"))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise BadTransfer(f"{base}.json is not JSON ({type(exc).__name__})") from None
        if not isinstance(manifest, dict) or manifest.get("version") != 1:
            raise BadTransfer(f"{base}.json is not a transfer manifest")
        if "pickle" in manifest:
            if not allow_pickle:
                raise BadTransfer("the container sent a pickle, and pickle was not allowed")
            count = manifest["pickle"]
            if type(count) is not int or not 0 <= count < 1 << 20:
                raise BadTransfer(f"bad buffer count {count!r}")
            buffers = [_mapped(dir_fd, f"{base}.{i}.buf") for i in range(count)]
            return pickle.loads(_read_small(dir_fd, base + ".pkl"), buffers=buffers)
        if "value" not in manifest:
            raise BadTransfer(f"{base}.json holds no value")
        try:
            return _Decoder(dir_fd, base).value(manifest["value"])
        except BadTransfer:
            raise
        except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise BadTransfer(f"{type(exc).__name__}: {exc}") from None
    finally:
        os.close(dir_fd)


def remove_base(folder: str, base: str) -> None:
    """Delete every entry ``<base>.*`` of ``folder`` (links themselves, never what they point
    at; nothing outside the folder)."""
    _check_base(base)
    try:
        dir_fd = _open_dir(folder)
    except OSError:
        return
    try:
        for name in os.listdir(dir_fd):
            if name.startswith(base + "."):
                try:
                    os.unlink(name, dir_fd=dir_fd)
                except IsADirectoryError:
                    import shutil

                    shutil.rmtree(name, dir_fd=dir_fd, ignore_errors=True)
                except OSError:
                    pass
    finally:
        os.close(dir_fd)
