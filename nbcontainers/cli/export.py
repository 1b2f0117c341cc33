"""`nbcontainers export`: a saved model as a tested serving image."""

from __future__ import annotations

from typing import Any

import click

from ..serving.options import click_options as export_click_options
from ..serving.options import export_options
from .common import errors_as_messages, get_runtime

__all__ = ["export_command"]

# --name is the CLI's own (in a notebook the variable names the model), listed after --example.
_NAME = click.option("--name", default=None, help="The model's name in URLs (default: from MODEL).")
_TRUST = click.option(
    "--trust",
    multiple=True,
    metavar="TYPE",
    help="A type a .skops MODEL may hold beyond scikit-learn's (repeat; only for a file you "
    "trust: skops builds what the file names).",
)


@click.command("export")
@click.argument("model")
@export_click_options({"example": [_NAME, _TRUST]})
@errors_as_messages
def export_command(model: str, name: str | None, trust: tuple[str, ...], **values: Any) -> None:
    """Export a saved MODEL as a tested serving image.

    MODEL is a .pt2 (torch.export.save), a .skops file, a .pkl/.joblib with --format pickle,
    or file.py:function. In a notebook, `%export-serving` exports a live model instead.
    """
    from pathlib import Path

    from ..serving.export import export_from_namespace
    from ..serving.saved import load_example, load_model

    var, namespace = load_model(model, values["format"], trust)
    namespace["__nbc_example__"] = load_example(values["example"])
    if name:
        namespace[name] = namespace[var]
        var = name
    try:
        options = export_options(
            values, example="__nbc_example__", source=str(Path(model.split(":")[0]).resolve())
        )
    except ValueError as exc:  # only --init-args is parsed there
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--init-args") from None
    # The image is labelled with the installed version, as `%export-serving` labels it.
    result = export_from_namespace(namespace, var, options, runtime=get_runtime(), say=click.echo)
    if result.served:
        click.echo(f"{result.url}/v2/models/{result.name}/infer")
