"""Request batching: one worker thread runs the model; requests that queue meanwhile share its
next call when the model's rows are independent (``meta["batchable"]``, proven at export; no
added wait at low load). The queue is bounded: a full one is a 503 with Retry-After, so a
flood makes some clients retry instead of making every client wait longer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

from .limits import BadRequest
from .metrics import Metrics

__all__ = [
    "Batcher",
]


class Batcher:
    """Runs the model in one worker thread; requests that arrive while it is busy are
    concatenated into the next call when ``batchable`` (the model's rows are independent),
    else each is a call of its own. At most ``max_queue`` requests wait."""

    def __init__(
        self,
        predict: Callable[[Any], list[Any]],
        batchable: bool,
        frame: bool,
        max_rows: int,
        metrics: Metrics,
        max_queue: int = 128,
    ) -> None:
        self.predict = predict
        self.batchable = batchable
        self.frame = frame
        self.max_rows = max_rows
        self.metrics = metrics
        self.max_queue = max_queue
        self.queue: asyncio.Queue[tuple[Any, asyncio.Future[list[Any]]]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def submit(self, batch: Any) -> list[Any]:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())
        if self.queue.qsize() >= self.max_queue:
            raise BadRequest(
                f"The server is busy: {self.max_queue} requests wait for the model "
                "(NBC_MAX_QUEUE); retry shortly.",
                status=503,
                retry_after=1,
            )
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((batch, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            rows = len(items[0][0])
            # Only what is already waiting: batching never delays a lone request.
            while self.batchable and not self.queue.empty() and rows < self.max_rows:
                items.append(self.queue.get_nowait())
                rows += len(items[-1][0])
            try:
                # In a thread: the model must not block the event loop that takes requests.
                await loop.run_in_executor(None, self._call, items)
            except Exception as exc:  # one bad call must not stop the loop
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)

    def _call(self, items: list[tuple[Any, asyncio.Future[list[Any]]]]) -> None:
        loop = items[0][1].get_loop()
        if len(items) > 1:
            joined = (
                __import__("pandas").concat([b for b, _ in items], ignore_index=True)
                if self.frame
                else np.concatenate([b for b, _ in items])
            )
            try:
                outputs = self.predict(joined)
                if all(len(o) == len(joined) for o in outputs):
                    self.metrics.batch(len(items))
                    start = 0
                    for batch, future in items:
                        end = start + len(batch)
                        loop.call_soon_threadsafe(
                            _settle, future, [o[start:end] for o in outputs], None
                        )
                        start = end
                    return
            except Exception:
                pass
        # Unbatched, one call each: a joined call failed (maybe because of one bad request,
        # which then fails alone) or its outputs don't split by row.
        for batch, future in items:
            self.metrics.batch(1)
            try:
                result, error = self.predict(batch), None
            except Exception as exc:
                result, error = None, exc
            loop.call_soon_threadsafe(_settle, future, result, error)


# Settled on the event loop's thread (asyncio futures are not thread-safe), and only once:
# a client that went away may have cancelled it.
def _settle(future: asyncio.Future[list[Any]], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
