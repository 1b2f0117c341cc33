"""The REST API of the JupyterLab extension, authenticated and authorized like Jupyter's own
kernels API and scoped to this server's user:

- ``GET /api/nbcontainers/kernels``: the user's container kernels (a JSON list);
- ``GET /api/nbcontainers/kernels/<id>``: one of them, by kernel or container id;
- ``DELETE /api/nbcontainers/kernels/<id>``: stop it (this server's kernel is shut down the
  way the kernels API does; a pooled or relayed one is stopped and removed);
- ``GET /api/nbcontainers/kernels/<id>/logs?tail=50``: its last log lines.

An id that is not one of the user's containers is a 404, the same answer as an id that does
not exist, so another user's ids can't even be confirmed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .collect import Collector
from .records import KernelRecord

__all__ = ["handlers"]

# Jupyter's permission names: who may read or stop kernels may read or stop these.
AUTH_RESOURCE = "kernels"
STOP_TIMEOUT = 5.0
MAX_TAIL = 1000


class _Base(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def collector(self) -> Collector:
        collector: Collector = self.settings["nbcontainers_collector"]
        return collector

    async def _one(self, key: str) -> KernelRecord:
        record = self.collector.lookup(await self.collector.records(), key)
        if record is None:
            raise web.HTTPError(404, f"No container kernel of yours has the id {key!r}.")
        return record


class KernelsHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps(await self.collector.records()))


class KernelHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, key: str) -> None:
        self.finish(json.dumps(await self._one(key)))

    @web.authenticated
    @authorized
    async def delete(self, key: str) -> None:
        record = await self._one(key)
        km = self.settings["kernel_manager"]
        if record["server_kernel"] and record["kernel_id"] in km:
            # As DELETE /api/kernels/<id> does: the provisioner stops and removes the container.
            await km.shutdown_kernel(record["kernel_id"])
        else:
            found = [f for f in await self.collector.find() if f.state.id == record["container_id"]]
            for f in found:
                await asyncio.to_thread(f.runtime.stop, f.state.id, STOP_TIMEOUT)
                await asyncio.to_thread(f.runtime.remove, f.state.id)
        self.collector.invalidate()  # the next list must not show the stopped kernel
        self.set_status(204)
        self.finish()


class LogsHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, key: str) -> None:
        try:
            tail = int(self.get_argument("tail", "50"))
        except ValueError:
            raise web.HTTPError(
                400, "tail must be a whole number of lines, e.g. ?tail=50"
            ) from None
        tail = max(1, min(tail, MAX_TAIL))
        record = await self._one(key)
        found = [f for f in await self.collector.find() if f.state.id == record["container_id"]]
        text = (
            await asyncio.to_thread(found[0].runtime.logs, found[0].state.id, tail) if found else ""
        )
        self.finish(json.dumps({"kernel_id": record["kernel_id"], "tail": tail, "logs": text}))


def handlers(base_url: str) -> list[tuple[str, type[Any]]]:
    """The URL patterns under the server's ``base_url``."""
    root = url_path_join(base_url, "api", "nbcontainers", "kernels")
    key = r"(?P<key>[A-Za-z0-9_.\-]+)"
    return [
        (root, KernelsHandler),
        (url_path_join(root, key), KernelHandler),
        (url_path_join(root, key, "logs"), LogsHandler),
    ]
