"""A Jupyter server as the collector sees it, with no kernels and no sessions: what the unit
tests hand the server extension's collector in place of a running server."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any


def bare_server() -> Any:
    km = SimpleNamespace(list_kernel_ids=lambda: [], get_kernel=lambda k: None)

    async def sessions() -> list[dict[str, Any]]:
        return []

    return SimpleNamespace(
        kernel_manager=km,
        session_manager=SimpleNamespace(list_sessions=sessions),
        log=logging.getLogger("test"),
    )
