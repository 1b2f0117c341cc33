"""What a request may be, checked before anything decodes it: :class:`BadRequest` for what the
client must fix, and a scan of a JSON body's nesting depth and value count.

The scan runs on the raw bytes (a regex and numpy, no Python loop per byte) and is linear in
the body's size whatever it holds, so a body of ``[`` x 10,000, a million tiny arrays or an
unterminated string of escaped quotes is refused in milliseconds instead of reaching
``json.loads``'s recursion, numpy's object arrays or a regex's backtracking.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MAX_DEPTH",
    "BadRequest",
    "Budget",
    "Limits",
    "check_json",
    "parse_json",
]

# The deepest a body may nest: an OIP request is 4 deep plus its data ({"inputs": [{"data":
# [[...]]}]}), a /predict body 2 plus a row's; 32 leaves room for any real tensor's rank.
MAX_DEPTH = 32

# A JSON string with its escapes: its contents are not structure, whatever they hold. An
# unterminated one runs to the end of the body (a lone trailing backslash included), so every
# quote is consumed by the first match that reaches it: without that, each quote of
# '"\\"\\"\\"...' would start a match that scans to the end and fails (quadratic: 32 KB took
# 4.8 s). Possessive quantifiers: no backtracking either.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class BadRequest(Exception):
    """The client's fault (or the server's load, with a 503): answered with ``status`` and
    the message, the server keeps going. ``retry_after``: seconds for a Retry-After header."""

    def __init__(self, message: str, status: int = 400, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in the decoding process too: its status must survive the trip back.
        return (BadRequest, (str(self), self.status, self.retry_after))


def _env(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number; unset it for {default:g}.") from None
    # nan and inf pass a comparison with 0, and inf would mean "no limit".
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={text!r} must be a number above 0; unset it for {default:g}.")
    return value


@dataclass(frozen=True)
class Limits:
    """Every bound the server holds a request to, each from an environment variable of the
    image (the README's limits table lists them); the defaults are safe for a server on an
    untrusted network."""

    max_body: int = 8 << 20  # NBC_MAX_BODY_BYTES: one request's body
    max_rows: int = 4096  # NBC_MAX_ROWS: rows of one request
    max_elements: int = 1 << 21  # NBC_MAX_ELEMENTS: values of one request
    max_concurrency: int = 256  # NBC_MAX_CONCURRENCY: connections + requests, per worker
    max_queue: int = 128  # NBC_MAX_QUEUE: requests waiting for the model, per worker
    max_buffered: int = 64 << 20  # NBC_MAX_BUFFERED_BYTES: request bytes held, per worker
    header_timeout: float = 10.0  # NBC_HEADER_TIMEOUT: seconds to send a request's headers
    body_timeout: float = 30.0  # NBC_BODY_TIMEOUT: seconds to send a request's body
    write_timeout: float = 30.0  # NBC_WRITE_TIMEOUT: seconds an answer may wait for its reader
    max_header_bytes: int = 64 << 10  # NBC_MAX_HEADER_BYTES: request line + headers
    grpc_max_message: int = 8 << 20  # NBC_GRPC_MAX_MESSAGE_BYTES: one gRPC message

    @classmethod
    def from_env(cls) -> Limits:
        """The limits the environment sets; a value that is no number says which and why."""
        d = cls()
        body = int(_env("NBC_MAX_BODY_BYTES", d.max_body))
        return cls(
            max_body=body,
            max_rows=int(_env("NBC_MAX_ROWS", d.max_rows)),
            max_elements=int(_env("NBC_MAX_ELEMENTS", d.max_elements)),
            max_concurrency=int(_env("NBC_MAX_CONCURRENCY", d.max_concurrency)),
            max_queue=int(_env("NBC_MAX_QUEUE", d.max_queue)),
            # At least one body's worth, or no request of the allowed size could be read.
            max_buffered=max(body, int(_env("NBC_MAX_BUFFERED_BYTES", d.max_buffered))),
            header_timeout=_env("NBC_HEADER_TIMEOUT", d.header_timeout),
            body_timeout=_env("NBC_BODY_TIMEOUT", d.body_timeout),
            write_timeout=_env("NBC_WRITE_TIMEOUT", d.write_timeout),
            max_header_bytes=int(_env("NBC_MAX_HEADER_BYTES", d.max_header_bytes)),
            grpc_max_message=int(_env("NBC_GRPC_MAX_MESSAGE_BYTES", body)),
        )


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
    except UnicodeDecodeError as exc:
        raise BadRequest(f"The body is not JSON: not UTF-8 text at byte {exc.start}.") from None
    except json.JSONDecodeError as exc:
        # Where, not the decoder's own words: a message names the problem, nothing else.
        raise BadRequest(
            f"The body is not JSON: invalid at line {exc.lineno} column {exc.colno}."
        ) from None
    except ValueError:
        raise BadRequest("The body is not JSON.") from None
    except RecursionError:  # cannot pass the depth check; kept so it can never be a 500
        raise BadRequest(f"The JSON nests deeper than {MAX_DEPTH} levels.") from None


class Budget:
    """The request bytes one worker holds (bodies being read, and waiting for the model), at
    most ``limits.max_buffered``; and the reading of a body under its size and time limits."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.held = 0

    def reserve(self, size: int) -> None:
        if self.held + size > self.limits.max_buffered:
            raise BadRequest(
                f"The server holds {self.limits.max_buffered} bytes of requests already "
                "(NBC_MAX_BUFFERED_BYTES); retry.",
                status=503,
                retry_after=1,
            )
        self.held += size

    def release(self, size: int) -> None:
        self.held -= size

    async def read_body(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]]
    ) -> bytes:
        """The request's body, its bytes reserved (the caller releases ``len(body)``)."""
        max_body = self.limits.max_body
        # Over the limit, the rest is read and dropped (up to 8x the limit) so the client
        # gets its 413 rather than a connection reset in the middle of sending.
        for name, value in scope.get("headers", []):
            if name == b"content-encoding" and value.lower() not in (b"identity", b""):
                raise BadRequest(
                    f"Content-Encoding {value.decode(errors='replace')[:40]} is not accepted; "
                    "send the body uncompressed.",
                    status=415,
                )
        chunks: list[bytes] = []
        size = reserved = 0

        async def read() -> None:
            nonlocal size, reserved
            while True:
                message = await receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size <= max_body:
                    self.reserve(len(chunk))
                    reserved += len(chunk)
                    chunks.append(chunk)
                if not message.get("more_body") or size > 8 * max_body:
                    return

        try:
            # One deadline for the whole body (slowloris sends a byte now and then).
            await asyncio.wait_for(read(), self.limits.body_timeout)
        except asyncio.TimeoutError:
            self.release(reserved)
            raise BadRequest(
                f"The body did not arrive within {self.limits.body_timeout:g} s "
                "(NBC_BODY_TIMEOUT).",
                status=408,
            ) from None
        except BaseException:
            self.release(reserved)
            raise
        if size > max_body:
            self.release(reserved)
            raise BadRequest(
                f"Request body over {max_body} bytes (NBC_MAX_BODY_BYTES).", status=413
            )
        return b"".join(chunks)
