"""A failed container cell as a local exception: its class is named after the remote
``ename`` and it renders the remote traceback, so the notebook shows one traceback and
"Run all", nbclient and papermill stop at the failing cell."""

from __future__ import annotations

from typing import Any

__all__ = ["RemoteError", "raise_if_error", "remote_error"]


class RemoteError(Exception):
    """Base of exceptions re-raised from a container cell; IPython shows the remote traceback."""

    remote_traceback: tuple[str, ...] = ()

    def _render_traceback_(self) -> list[str]:
        return list(self.remote_traceback)


# One class per remote name, made once: `except ZeroDivisionError`-style checks by name and
# repeated failures of one kind then share a type.
_ERROR_TYPES: dict[str, type[RemoteError]] = {}


def remote_error(ename: str, evalue: str, traceback: list[str]) -> RemoteError:
    """An exception whose class is named after the remote ``ename`` ("ZeroDivisionError")."""
    cls = _ERROR_TYPES.get(ename)
    if cls is None:
        name = ename if ename.isidentifier() else "RemoteError"
        cls = type(name, (RemoteError,), {"__module__": "nbcontainers.remote"})
        _ERROR_TYPES[ename] = cls
    exc = cls(evalue)
    exc.remote_traceback = tuple(traceback)
    return exc


def raise_if_error(content: dict[str, Any]) -> None:
    """Raise the remote error a reply's ``content`` reports, if it reports one."""
    if content.get("status") == "error":
        raise remote_error(
            content.get("ename", "RemoteError"),
            content.get("evalue", ""),
            content.get("traceback", []),
        )
