"""`%container` parsing and dispatch, usage errors and did-you-mean: no kernel, no engine."""

from __future__ import annotations

import argparse

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbcontainers.errors import ConfigError
from nbcontainers.magics.parser import SUBCOMMANDS, Dispatcher, container_parser


def usage_error(shell: InteractiveShell, line: str) -> str:
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("container", line)
    assert type(caught.value) is UsageError  # IPython checks the exact type
    return str(caught.value)


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("frobnicate", "invalid choice: 'frobnicate'"),
        ("", "%container needs a subcommand: use, local, status, list, stop"),
        ("use", "the following arguments are required: name"),
        ("use pyton", "Did you mean 'python'?"),
        ("use 'python", "No closing quotation"),
        ("logs --tail many", "invalid int value: 'many'"),
        ("push", "the following arguments are required: names"),
        ("use python --cpus two", "invalid float value: 'two'"),
    ],
)
def test_usage_errors_say_what_is_wrong(shell: InteractiveShell, line: str, said: str) -> None:
    text = usage_error(shell, line)
    assert said in text
    assert text.startswith("%container") or "Did you mean" in text


def test_usage_errors_point_at_the_help(shell: InteractiveShell) -> None:
    assert usage_error(shell, "frobnicate").endswith(". See `%container?`.")
    assert usage_error(shell, "").endswith(". See `%container?`.")


def test_the_help_is_the_magics_docstring(shell: InteractiveShell) -> None:
    doc = shell.magics_manager.magics["line"]["container"].__doc__
    for sub in SUBCOMMANDS:
        assert f"%container {sub}" in doc, sub
    assert "%container use NAME" in doc and "%%container [NAME]" in doc


def test_every_subcommand_parses_with_its_defaults() -> None:
    parser = container_parser()
    lines = {
        "use python --gpus all --memory 8g --cpus 2": {
            "name": "python",
            "gpus": "all",
            "memory": "8g",
            "cpus": 2.0,
        },
        "local": {},
        "list": {},
        "status": {"name": None},
        "stop nbc-python": {"name": "nbc-python"},
        "restart": {"name": None},
        "logs": {"name": None, "tail": 50},
        "push a b": {"names": ["a", "b"]},
        "pull a": {"names": ["a"]},
        "snapshot": {
            "dir": "snapshot",
            "minimal": False,
            "build": False,
            "verify": False,
            "wheels": False,
        },
        "snapshot ./env --minimal --wheels": {"dir": "./env", "minimal": True, "wheels": True},
        "pin": {"argv": []},
    }
    for line, expected in lines.items():
        args = vars(parser.parse_args(line.split()))
        assert args["command"] == line.split()[0]
        for key, value in expected.items():
            assert args[key] == value, (line, key)
    assert {line.split()[0] for line in lines} == set(SUBCOMMANDS)


def test_dispatch_calls_the_handler_of_the_subcommand() -> None:
    called: list[argparse.Namespace] = []
    dispatch = Dispatcher(dict.fromkeys(SUBCOMMANDS, lambda args: called.append(args) or 42))
    assert dispatch("logs python --tail 3") == 42
    assert called[0].command == "logs" and called[0].tail == 3


def test_dispatch_turns_library_errors_into_usage_errors() -> None:
    def fails(args: argparse.Namespace) -> None:
        raise ConfigError("Bad 'gpus' setting: no. Use 'all', a count or ids.")

    dispatch = Dispatcher({**dict.fromkeys(SUBCOMMANDS, print), "use": fails})
    with pytest.raises(UsageError, match=r"^Bad 'gpus' setting: no\. Use"):
        dispatch("use python")


def test_dispatch_refuses_a_subcommand_without_a_handler() -> None:
    with pytest.raises(ValueError, match="snapshot"):
        Dispatcher({s: print for s in SUBCOMMANDS if s != "snapshot"})
    with pytest.raises(ValueError, match="frobnicate"):
        Dispatcher({**dict.fromkeys(SUBCOMMANDS, print), "frobnicate": print})


def test_load_wires_every_subcommand_to_a_theme(shell: InteractiveShell) -> None:
    from .conftest import loaded

    dispatch = loaded(shell).session.dispatch
    assert dispatch is not None and sorted(dispatch.handlers) == sorted(SUBCOMMANDS)
    owners = {sub: type(h.__self__).__name__ for sub, h in dispatch.handlers.items()}  # type: ignore[attr-defined]
    assert owners == {
        "use": "SessionMagics",
        "local": "SessionMagics",
        "list": "SessionMagics",
        "stop": "SessionMagics",
        "restart": "SessionMagics",
        "logs": "SessionMagics",
        "pin": "SessionMagics",
        "push": "TransferMagics",
        "pull": "TransferMagics",
        "snapshot": "SnapshotMagics",
        "status": "StatusMagics",
    }
