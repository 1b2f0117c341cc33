"""`%container pull`'s encoder, run in the container kernel (sent as source by
:func:`encoder_source`): writes a variable as data only, in the format
:mod:`nbcontainers.magics.pulldata` reads (see there), or as a pickle when the user allowed it.

Standard library only at the top: numpy and pandas are imported when the value is one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
from typing import Any

__all__ = ["NotData", "encode_to", "encoder_source"]


class NotData(TypeError):
    """Raised in the container for a value that has no data-only form."""


def encode_to(obj: Any, folder: str, base: str, allow_pickle: bool) -> str:
    """Write ``obj`` as ``<folder>/<base>.json`` (+ ``.npy`` files); return the kind written,
    "data" or "pickle". On failure nothing is left behind."""
    files: list[str] = []

    def new_file(ext: str) -> str:
        path = os.path.join(folder, f"{base}.{len(files)}.{ext}")
        files.append(path)
        return path

    def array(a: Any) -> dict[str, Any]:
        import numpy as np

        a = np.asarray(a)
        if a.dtype.hasobject:
            raise NotData(f"a numpy array of dtype {a.dtype} holds Python objects")
        index = len(files)
        with open(new_file("npy"), "xb") as f:
            np.save(f, a, allow_pickle=False)
        return {"__nbc__": "ndarray", "file": index}

    def column(values: Any) -> dict[str, Any]:
        # One pandas column or index level: numbers, booleans and times as .npy, categories
        # as codes plus categories, anything else as a JSON list under its dtype's name.
        import numpy as np
        import pandas as pd

        dtype = values.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            cat = pd.Categorical(values)
            return {
                "__nbc__": "categorical",
                "codes": array(cat.codes),
                "categories": column(cat.categories),
                "ordered": bool(cat.ordered),
            }
        if isinstance(dtype, pd.DatetimeTZDtype):
            utc = pd.DatetimeIndex(values).tz_convert("UTC").tz_localize(None)
            return {"__nbc__": "datetimetz", "values": array(utc.values), "tz": str(dtype.tz)}
        if isinstance(dtype, np.dtype) and not dtype.hasobject:
            return {"__nbc__": "column", "dtype": str(dtype), "values": array(values)}
        items = [None if _is_na(v) else value(v) for v in list(values)]
        return {"__nbc__": "column", "dtype": str(dtype), "items": items}

    def _is_na(v: Any) -> bool:
        import pandas as pd

        try:
            return bool(pd.isna(v)) and not isinstance(v, float)
        except (TypeError, ValueError):
            return False

    def index(ix: Any) -> dict[str, Any]:
        import pandas as pd

        if isinstance(ix, pd.RangeIndex):
            return {
                "__nbc__": "range",
                "args": [ix.start, ix.stop, ix.step],
                "name": value(ix.name),
            }
        if isinstance(ix, pd.MultiIndex):
            levels = [column(ix.get_level_values(i)) for i in range(ix.nlevels)]
            return {"__nbc__": "multi", "levels": levels, "names": value(list(ix.names))}
        return {"__nbc__": "index", "values": column(ix), "name": value(ix.name)}

    def value(v: Any) -> Any:
        if v is None or isinstance(v, (bool, str)) or type(v) in (int, float):
            return v
        t = type(v)
        module = t.__module__.split(".")[0]
        if isinstance(v, (list, tuple, set, frozenset)) and module == "builtins":
            items = [value(x) for x in v]
            if t is list:
                return items
            return {"__nbc__": t.__name__, "items": items}
        if t is dict:
            if all(type(k) is str for k in v) and "__nbc__" not in v:
                return {k: value(x) for k, x in v.items()}
            return {"__nbc__": "dict", "items": [[value(k), value(x)] for k, x in v.items()]}
        if t in (bytes, bytearray):
            import base64

            return {"__nbc__": t.__name__, "b64": base64.b64encode(v).decode()}
        if t is complex:
            return {"__nbc__": "complex", "re": v.real, "im": v.imag}
        if isinstance(v, int) and module == "builtins":
            return int(v)
        if module == "numpy":
            import numpy as np

            if isinstance(v, np.ndarray) and t is np.ndarray:
                return array(v)
            if isinstance(v, np.generic):
                return {**array(np.asarray(v)), "__nbc__": "scalar"}
        if module == "pandas":
            import pandas as pd

            if t is pd.DataFrame:
                return {
                    "__nbc__": "dataframe",
                    "columns": index(v.columns),
                    "index": index(v.index),
                    "data": [column(v.iloc[:, i]) for i in range(v.shape[1])],
                }
            if t is pd.Series:
                return {
                    "__nbc__": "series",
                    "name": value(v.name),
                    "index": index(v.index),
                    "data": column(v),
                }
            if isinstance(v, pd.Index):
                return index(v)
            if t is pd.Timestamp and v.tz is None:
                import numpy as np

                return {**array(np.asarray(v.to_datetime64())), "__nbc__": "scalar"}
        raise NotData(f"a {t.__module__}.{t.__qualname__}")

    try:
        try:
            manifest = json.dumps({"version": 1, "value": value(obj)})
            kind = "data"
        except NotData:
            if not allow_pickle:
                raise
            for path in files:
                os.unlink(path)
            files.clear()
            buffers: list[Any] = []
            data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
            for buf in buffers:
                with open(new_file("buf"), "xb") as f:
                    f.write(buf.raw())
            with open(os.path.join(folder, base + ".pkl"), "xb") as f:
                f.write(data)
            manifest = json.dumps({"version": 1, "pickle": len(buffers)})
            kind = "pickle"
        with open(os.path.join(folder, base + ".json"), "xb") as manifest_file:
            manifest_file.write(manifest.encode())
    except BaseException:
        for name in os.listdir(folder):
            if name.startswith(base + "."):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
        raise
    return kind


def encoder_source() -> str:
    """Source that defines :class:`NotData` and :func:`encode_to` in a kernel without
    nbcontainers (standard library only), for a module that begins with
    ``from __future__ import annotations``."""
    import inspect

    # Annotations stay unevaluated: the module it joins starts with the __future__ import.
    header = "import contextlib, json, os, pickle\n"
    return header + inspect.getsource(NotData) + "\n" + inspect.getsource(encode_to)
