"""`%export-serving` and `nbcontainers export` share one option table: same flags, same
defaults, same ExportOptions; each surface reports bad values in its own idiom."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import click
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbcontainers.cli import main
from nbcontainers.magics.export import export_parser
from nbcontainers.serving.export import ExportOptions
from nbcontainers.serving.options import OPTIONS, export_options


def magic_options() -> dict[str, argparse.Action]:
    return {a.option_strings[0]: a for a in export_parser()._actions if a.option_strings}


def cli_options() -> dict[str, click.Option]:
    command = main.commands["export"]
    return {
        p.opts[0]: p
        for p in command.params
        # The CLI's own: a file has no variable name, and only a file's skops types need --trust.
        if isinstance(p, click.Option) and p.name not in ("name", "trust", "help")
    }


def test_the_magic_and_the_cli_have_the_same_options() -> None:
    magic, cli = magic_options(), cli_options()
    flags = [f for o in OPTIONS for f in o.flags]
    assert sorted(magic) == sorted(flags)
    assert sorted(cli) == sorted(o.flag for o in OPTIONS)  # click keeps --cpu with --gpu
    assert cli["--gpu"].secondary_opts == ["--cpu"]
    for option in OPTIONS:
        assert magic[option.flag].dest == cli[option.flag].name == option.dest
        assert option.help, option.flag
        assert cli[option.flag].help == option.help
    assert list(magic["--format"].choices or ()) == list(cli["--format"].type.choices)  # type: ignore[attr-defined]
    assert cli["--example"].required and not magic["--example"].required


def test_the_magic_and_the_cli_parse_the_same_defaults() -> None:
    magic = vars(export_parser().parse_args(["clf"]))
    with main.commands["export"].make_context("export", ["m.skops", "--example", "b.npy"]) as ctx:
        cli = dict(ctx.params)
    assert cli.pop("model") == "m.skops" and cli.pop("name") is None and cli.pop("trust") == ()
    assert magic.pop("name") == "clf"
    assert (magic.pop("example"), cli.pop("example")) == ("", "b.npy")
    assert magic == cli
    assert sorted(cli) == sorted(o.dest for o in OPTIONS if o.dest != "example")


def test_the_cli_lists_its_options_in_the_order_it_always_did() -> None:
    names = [p.opts[0] for p in main.commands["export"].params if isinstance(p, click.Option)]
    assert names == [
        "--example",
        "--name",
        "--trust",  # the CLI's own, added with the trust list fixed at export
        "--dir",
        "--image",
        "--gpu",
        "--format",
        "--method",
        "--init-args",
        "--no-build",
        "--run",
        "--port",
        "--push",
        "--grpc",
    ]


def test_defaults_are_the_export_defaults() -> None:
    args = export_parser().parse_args(["clf"])
    assert export_options(vars(args), example="", source="") == ExportOptions()


def test_every_option_reaches_its_field() -> None:
    line = (
        "clf --example X[:4] --dir out --image me/clf:1 --cpu --format skops "
        '--method predict_proba --init-args {"n":2} --no-build --run --port 8123 '
        "--push registry:5000/team --grpc"
    )
    args = export_parser().parse_args(line.split())
    got = export_options(vars(args), example=args.example, source="nb.ipynb")
    assert got == ExportOptions(
        example="X[:4]",
        format="skops",
        gpu=False,
        method="predict_proba",
        init_args={"n": 2},
        image="me/clf:1",
        folder=Path("out"),
        build=False,
        run=True,
        port=8123,
        push="registry:5000/team",
        grpc=True,
        source="nb.ipynb",
    )
    # Every field differs from its default: none is left unset by the table.
    for field in dataclasses.fields(ExportOptions):
        assert getattr(got, field.name) != getattr(ExportOptions(), field.name), field.name


def magic_error(shell: InteractiveShell, line: str) -> str:
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("export-serving", line)
    assert type(caught.value) is UsageError
    return str(caught.value)


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (
            "",
            "%export-serving: the following arguments are required: name. See `%export-serving?`.",
        ),
        ("clf --example X --bogus 1", "%export-serving: unrecognized arguments: --bogus 1."),
        ("clf --gpu --cpu", "%export-serving: argument --cpu: not allowed with argument --gpu."),
        ("clf --format onnx", "%export-serving: argument --format: invalid choice: 'onnx'"),
        ("clf --port http", "%export-serving: argument --port: invalid int value: 'http'"),
        ("clf --init-args {x", "%export-serving: Expecting property name enclosed in double"),
        ("clf --example 'X[:4]", "%export-serving: No closing quotation"),
    ],
)
def test_bad_magic_arguments_are_usage_errors(
    shell: InteractiveShell, line: str, said: str
) -> None:
    assert magic_error(shell, line).startswith(said)


def test_an_unquoted_example_with_spaces_is_one_expression(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbcontainers.serving.export as export_module

    seen: dict[str, Any] = {}

    def export(evaluate: Any, name: str, options: ExportOptions, **kw: Any) -> None:
        seen.update(name=name, options=options)

    monkeypatch.setattr(export_module, "export", export)
    monkeypatch.setattr("nbcontainers.runtimes.get_runtime", lambda name="docker": None)
    assert shell.run_line_magic("export-serving", "clf --example X[:4, :2] --no-build") is None
    assert seen["name"] == "clf" and seen["options"].example == "X[:4, :2]"
    assert not seen["options"].build and seen["options"].source  # the notebook's path


def test_the_alias_without_a_hyphen_is_the_same_magic(shell: InteractiveShell) -> None:
    line_magics = shell.magics_manager.magics["line"]
    assert line_magics["export_serving"] == line_magics["export-serving"]
    assert "--example EXPR" in (line_magics["export-serving"].__doc__ or "")
