"""What a request may be, checked before anything decodes it: :class:`BadRequest` for what the
client must fix, and a scan of a JSON body's nesting depth and value count.

The scan runs on the raw bytes (a regex and numpy, no Python loop per byte), so a body of
``[`` x 10,000 or a million tiny arrays is refused in milliseconds instead of reaching
``json.loads``'s recursion or numpy's object arrays.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

__all__ = [
    "MAX_DEPTH",
    "BadRequest",
    "check_json",
    "parse_json",
]

# The deepest a body may nest: an OIP request is 4 deep plus its data ({"inputs": [{"data":
# [[...]]}]}), a /predict body 2 plus a row's; 32 leaves room for any real tensor's rank.
MAX_DEPTH = 32

# A JSON string with its escapes: its contents are not structure, whatever they hold.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class BadRequest(Exception):
    """The client's fault: answered with ``status`` and the message, the server keeps going."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_json(raw: bytes, max_elements: int) -> None:
    """Refuse a JSON text nested deeper than :data:`MAX_DEPTH` or holding more than
    ``max_elements`` values, without decoding it."""
    bare = _STRING.sub(b"0", raw)
    brackets = np.frombuffer(bare.translate(None, _NOT_BRACKETS), dtype=np.uint8)
    if brackets.size:
        # '[' and '{' open, ']' and '}' close: the running sum is the depth at each bracket.
        opens = (brackets == ord("[")) | (brackets == ord("{"))
        depth = int(np.cumsum(np.where(opens, 1, -1)).max())
        if depth > MAX_DEPTH:
            raise BadRequest(f"The JSON nests {depth} deep; at most {MAX_DEPTH} levels.")
    # Every value but the first in a container follows a comma: an upper bound, cheaply.
    values = bare.count(b",") + 1
    if values > max_elements:
        raise BadRequest(
            f"The JSON holds about {values} values; at most {max_elements} (NBC_MAX_ELEMENTS).",
            status=413,
        )


def parse_json(raw: bytes, max_elements: int) -> Any:
    """``raw`` decoded, after :func:`check_json`; a :class:`BadRequest` for anything else."""
    check_json(raw, max_elements)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"The body is not JSON: {exc}") from None
    except RecursionError:  # cannot pass the depth check; kept so it can never be a 500
        raise BadRequest(f"The JSON nests deeper than {MAX_DEPTH} levels.") from None
