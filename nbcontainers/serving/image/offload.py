"""Work that must not run on the event loop: decoding a large request, encoding a large
reply. Each worker has one decoding process (``nbc-decode``), started on the first large
body; small ones are handled where they are (the round trip would cost more).

A thread would not do: ``json.loads`` and numpy's conversions hold the GIL for their whole
run, so a thread decoding 8 MB would keep health probes waiting as long as the loop would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from .grpc_service import decode_grpc_infer
from .limits import BadRequest
from .protocol import decode_infer, decode_predict, encode_infer

__all__ = [
    "INLINE_DECODE",
    "INLINE_ENCODE",
    "Offload",
    "decode_request",
    "encode_reply",
    "set_process_name",
]

# Bodies up to this size are decoded on the event loop: the worst of them (a body of empty
# strings, the slowest for the JSON pre-check) takes about 4 ms here; a larger one goes to
# the decoding process (its round trip costs more than decoding a small body).
INLINE_DECODE = 16 << 10
# Output values encoded on the loop; more go to the decoding process (about 4 ms here).
INLINE_ENCODE = 16 << 10

offload_log = logging.getLogger("nbcontainers.server")


class Offload:
    """This worker's decoding process, and the rule for what goes there."""

    def __init__(self) -> None:
        self.executor: Executor | None = None

    async def run(self, func: Callable[..., Any], args: tuple[Any, ...], heavy: bool) -> Any:
        """``func(*args)``: here when light, else in the decoding process."""
        if not heavy:
            return func(*args)
        if self.executor is None:
            self.executor = _decoding_process()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, func, *args)
        except BadRequest:
            raise
        except Exception:
            # The process died (out of memory, killed): a new one for the next request.
            offload_log.exception("the decoding process failed")
            self.shutdown()
            raise BadRequest(
                "The server could not handle this request now; retry.", status=503, retry_after=1
            ) from None

    def shutdown(self) -> None:
        executor, self.executor = self.executor, None
        if executor is not None:
            with contextlib.suppress(Exception):
                executor.shutdown(wait=False, cancel_futures=True)


def decode_request(
    kind: str, raw: bytes, header_length: int | None, meta: dict[str, Any], max_elements: int
) -> Any:
    """A request's body decoded, here or in the decoding process: /predict's batch, or the
    :class:`InferRequest` of an infer (``kind`` "infer") or a gRPC ModelInfer ("grpc").
    Whatever the body holds, the outcome is the decoded request or a :class:`BadRequest`."""
    try:
        if kind == "predict":
            return decode_predict(raw, meta, max_elements)
        if kind == "grpc":
            return decode_grpc_infer(raw, meta, max_elements)
        return decode_infer(raw, header_length, meta, max_elements)
    except BadRequest:
        raise
    except RecursionError:
        raise BadRequest("The request nests too deep.") from None
    except Exception as exc:
        # Checks above should leave nothing for here; what does is still the input's doing,
        # so a 400 that leaks nothing, and the details in the log for a fix.
        offload_log.warning("decoding a request failed: %s: %s", type(exc).__name__, exc)
        raise BadRequest("The request could not be read as this model's inputs.") from None


def encode_reply(
    kind: str, outputs: list[Any], request: Any, meta: dict[str, Any]
) -> tuple[bytes, int | None]:
    """The reply's body to /predict (``kind`` "predict") or an infer request, and the binary
    extension's JSON header length when some output is binary; here or in the decoding
    process."""
    if kind == "predict":
        predictions: Any = [o.tolist() for o in outputs]
        # One output: its rows directly (TF Serving's shape); several: a list each.
        reply = {"predictions": predictions[0] if len(outputs) == 1 else predictions}
        return json.dumps(reply).encode(), None
    return encode_infer(outputs, request, meta)


def _decoding_process() -> Executor:
    """One process per worker, started on the first large body: decodes queue there
    (bounded by the buffered-bytes budget), never on the loop."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    try:
        # spawn: this process has threads (the model's, gRPC's), which fork would copy in
        # whatever state they are.
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=set_process_name,
            initargs=("nbc-decode",),
        )
    except OSError as exc:  # no /dev/shm for its locks: serve on, slower to answer probes
        offload_log.warning("no decoding process (%s); large bodies are decoded in a thread", exc)
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbc-decode")


def set_process_name(name: str) -> None:
    """Name this process (``ps``, ``docker top``) by its role: nbc-worker, nbc-decode."""
    import ctypes

    with contextlib.suppress(Exception):  # not Linux, no libc: the name is a nicety
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME
