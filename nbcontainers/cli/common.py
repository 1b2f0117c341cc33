"""What every command module shares: errors as ``Error: …`` with the error's exit code, the
runtime seam, tables and ``--json``, and shell completion of image and kernelspec names."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.shell_completion import CompletionItem

from ..errors import NbcontainersError

if TYPE_CHECKING:  # for annotations only: importing them costs every command its start-up
    from ..runtimes import ContainerRuntime

__all__ = [
    "JSON",
    "complete_images",
    "complete_kernelspecs",
    "errors_as_messages",
    "get_runtime",
    "print_rows",
]

F = TypeVar("F", bound=Callable[..., Any])

JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def errors_as_messages(func: F) -> F:
    """Print ``Error: …`` and exit with the error's code instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NbcontainersError as exc:
            # click's own ClickException would exit 1 for everything; scripts tell a missing
            # engine (3) from a missing image (4) by the code.
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def get_runtime(name: str = "auto") -> ContainerRuntime:
    # Resolved per call, through the entry points, so tests and other engines can stand in.
    from ..runtimes import get_runtime as resolve

    return resolve(name)


def print_rows(
    rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str], as_json: bool, empty: str
) -> None:
    """``rows`` as JSON (every key), or as a table of ``columns`` (key -> header) with a header
    row, each column as wide as its widest cell; ``empty`` is said when there are no rows."""
    if as_json:  # the keys are what scripts rely on: add to them, never rename
        click.echo(json.dumps(list(rows), indent=2))
        return
    if not rows:
        click.echo(empty)
        return
    cells = [[_cell(r.get(k)) for k in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(columns.values())]
    for line in [list(columns.values()), *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None or value is False:
        return "-"
    return "yes" if value is True else str(value)


def _complete(names: Iterable[str], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]


def complete_images(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Catalog image names (built-in and the user's); never an engine call, so it is instant."""
    from ..catalog.entries import load_catalog

    try:
        return _complete(load_catalog(), incomplete)
    except NbcontainersError:
        return []  # a broken user catalog shows on the command itself, not on <Tab>


def complete_kernelspecs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Installed nbcontainers kernelspecs."""
    from ..catalog.kernelspecs import installed_kernelspecs

    return _complete(installed_kernelspecs(), incomplete)
