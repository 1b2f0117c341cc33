"""The export options, declared once: `%export-serving` and `nbcontainers export` are
generated from :data:`OPTIONS`, and :func:`export_options` turns what either parsed into
:class:`~nbcontainers.serving.export.ExportOptions`.

Only what differs by surface stays with the surface: the positional (a variable in the
notebook, a saved file on the command line), the CLI's ``--name``, how a bad value is
reported, and the CLI's ``--example`` being required (the magic lets the export say what is
missing, with the notebook's variables as suggestions).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .serialize import FORMATS

if TYPE_CHECKING:
    from .export import ExportOptions

__all__ = ["OPTIONS", "ExportOption", "add_arguments", "click_options", "export_options"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ExportOption:
    """One option of both export surfaces.

    ``dest`` is the name both parsers store the value under; ``kind`` is "text", "int",
    "choice", "flag" (present or not) or "switch" (``flag`` / ``off_flag`` set True / False,
    neither leaves the default None).
    """

    flag: str
    dest: str
    kind: Literal["text", "int", "choice", "flag", "switch"]
    default: Any
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    off_flag: str | None = None
    magic_help: str | None = None  # where the notebook reads the option differently
    required_on_cli: bool = False

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.flag, self.off_flag) if self.off_flag else (self.flag,)


# The order is the order `nbcontainers export --help` lists them in.
OPTIONS: tuple[ExportOption, ...] = (
    ExportOption(
        "--example",
        "example",
        "text",
        "",
        "A batch: .npy, .json rows or .csv.",
        magic_help="An expression giving an example batch, e.g. X_test[:4].",
        required_on_cli=True,
    ),
    ExportOption("--dir", "folder", "text", None, "Export folder (default ./serving-NAME)."),
    ExportOption(
        "--image", "image", "text", None, "Image ref to tag (default nbcontainers/serving-…)."
    ),
    ExportOption(
        "--gpu", "gpu", "switch", None, "Serve on a GPU (default: as saved).", off_flag="--cpu"
    ),
    ExportOption(
        "--format",
        "format",
        "choice",
        "auto",
        "How the model is saved: auto takes the safest format that round-trips; "
        "pickle only when asked.",
        choices=FORMATS,
    ),
    ExportOption("--method", "method", "text", None, "scikit-learn method (default predict)."),
    ExportOption(
        "--init-args", "init_args", "text", "{}", "JSON constructor arguments (torch classes)."
    ),
    ExportOption("--no-build", "no_build", "flag", False, "Write the folder only."),
    ExportOption("--run", "run", "flag", False, "Leave it running on 127.0.0.1."),
    ExportOption("--port", "port", "int", None, "Host port for --run (default: a free one)."),
    ExportOption("--push", "push", "text", None, "Push the tested image.", metavar="REGISTRY"),
    ExportOption(
        "--grpc",
        "grpc",
        "flag",
        False,
        "Also serve the Open Inference Protocol over gRPC (KServe v2 service) on port 8081.",
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add :data:`OPTIONS` to the magic's argparse parser."""
    # The magic's parser has no --help (`%export-serving?` shows its docstring); the help
    # texts still document each option where the parser is read.
    for option in OPTIONS:
        if option.kind == "switch":
            # Two flags for one value: passing both is an error, passing neither keeps None.
            group = parser.add_mutually_exclusive_group()
            group.add_argument(
                option.flag,
                dest=option.dest,
                action="store_true",
                default=option.default,
                help=option.help,
            )
            group.add_argument(option.off_flag or "", dest=option.dest, action="store_false")
        elif option.kind == "flag":
            parser.add_argument(
                option.flag, dest=option.dest, action="store_true", help=option.help
            )
        else:
            # Values stay text (--dir, --init-args): export_options converts them, the same
            # way for both surfaces.
            convert: Any = int if option.kind == "int" else None
            parser.add_argument(
                option.flag,
                dest=option.dest,
                default=option.default,
                type=convert,
                choices=option.choices or None,
                metavar=option.metavar,
                help=option.magic_help or option.help,
            )


def click_options(
    extra: Mapping[str, Sequence[Callable[[F], F]]] | None = None,
) -> Callable[[F], F]:
    """A decorator adding :data:`OPTIONS` to a click command, with the ``extra`` option
    decorators of a surface placed right after the option whose dest keys them."""
    import click  # here, not at the top: the serving layer does not need the CLI's library

    decorators: list[Callable[[F], F]] = []
    for option in OPTIONS:
        if option.kind == "switch":
            decl = f"{option.flag}/{option.off_flag}"
            decorators.append(
                click.option(decl, option.dest, default=option.default, help=option.help)
            )
        elif option.kind == "flag":
            decorators.append(
                click.option(option.flag, option.dest, is_flag=True, help=option.help)
            )
        else:
            kind: Any = {"int": int, "choice": click.Choice(option.choices)}.get(option.kind)
            settings: dict[str, Any] = {"type": kind, "metavar": option.metavar}
            if option.required_on_cli:
                # No default at all: click treats even an explicit None default as given.
                settings["required"] = True
            else:
                settings["default"] = option.default
            decorators.append(click.option(option.flag, option.dest, help=option.help, **settings))
        decorators.extend((extra or {}).get(option.dest, ()))

    def decorate(func: F) -> F:
        # click lists options in the order their decorators are written, that is applied
        # last to first.
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return decorate


def export_options(values: Mapping[str, Any], *, example: str, source: str) -> ExportOptions:
    """:class:`ExportOptions` from the parsed ``values`` (keyed by dest).

    ``--init-args`` is parsed here: a ``json.JSONDecodeError`` (a ``ValueError``) escapes for
    the surface to report in its own idiom.
    """
    from .export import ExportOptions

    folder = values["folder"]
    # --no-build reads as a flag but ExportOptions says what to do: build or not.
    return ExportOptions(
        example=example,
        format=values["format"],
        gpu=values["gpu"],
        method=values["method"],
        init_args=json.loads(values["init_args"]),
        image=values["image"],
        folder=Path(folder) if folder else None,
        build=not values["no_build"],
        run=values["run"],
        grpc=bool(values.get("grpc")),
        port=values["port"],
        push=values["push"],
        source=source,
    )
