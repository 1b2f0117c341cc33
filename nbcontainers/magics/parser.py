"""`%container SUBCOMMAND ...`: the argument table and the dispatch to the theme that
handles each subcommand."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from IPython.core.error import UsageError

from ..errors import NbcontainersError

__all__ = [
    "PICKLE_WARNING",
    "SUBCOMMANDS",
    "Dispatcher",
    "Handler",
    "UsageParser",
    "container_parser",
]

# In the order `%container` and its tab completion list them.
SUBCOMMANDS = [
    "use",
    "local",
    "status",
    "list",
    "stop",
    "restart",
    "logs",
    "push",
    "pull",
    "snapshot",
    "pin",
]

Handler = Callable[[argparse.Namespace], Any]

# What `--pickle` risks, said wherever pull refuses a value or its help mentions the flag.
PICKLE_WARNING = (
    "`%container pull NAME --pickle` moves it by pickle instead, and unpickling runs whatever "
    "code the container put in it, in this notebook, as you: use it only for images and code "
    "you trust."
)


class UsageParser(argparse.ArgumentParser):
    """An argparse parser whose errors are IPython usage errors, not a SystemExit.

    IPython shows a ``UsageError`` as one line without a traceback; it checks the exact type.
    """

    def error(self, message: str) -> NoReturn:
        # A subparser's prog is "%container use": the help to point at is the magic's.
        prog = self.prog.split()[0]
        raise UsageError(f"{prog}: {message}. See `{prog}?`.")


def container_parser() -> UsageParser:
    """The arguments of every `%container` subcommand (the help is the magic's docstring)."""
    parser = UsageParser(prog="%container", add_help=False)
    sub = parser.add_subparsers(dest="command", parser_class=UsageParser)
    use = sub.add_parser("use")
    use.add_argument("name")
    use.add_argument("--gpus", default=None)
    # --mem as the issue and the help write it; --memory as it was first spelt.
    use.add_argument("--mem", "--memory", dest="memory", default=None)
    use.add_argument("--cpus", type=float, default=None)
    for name in ("local", "list"):
        sub.add_parser(name)
    for name in ("status", "stop", "restart"):
        sub.add_parser(name).add_argument("name", nargs="?")
    logs = sub.add_parser("logs")
    logs.add_argument("name", nargs="?")
    logs.add_argument("--tail", type=int, default=50)
    sub.add_parser("push").add_argument("names", nargs="+")
    pull = sub.add_parser("pull")
    pull.add_argument("names", nargs="+")
    # Off by default: a pickle from the container runs the container's code in the notebook.
    pull.add_argument("--pickle", action="store_true")
    snap = sub.add_parser("snapshot")
    snap.add_argument("dir", nargs="?", default="snapshot")
    snap.add_argument("--minimal", action="store_true")
    snap.add_argument("--build", action="store_true")
    snap.add_argument("--verify", action="store_true")
    snap.add_argument("--wheels", action="store_true")
    # pin reads its own arguments (:mod:`.pin`): everything after the word is passed on.
    sub.add_parser("pin").add_argument("argv", nargs=argparse.REMAINDER)
    return parser


class Dispatcher:
    """Parse a `%container` line and call the handler of its subcommand.

    ``handlers`` maps every name of :data:`SUBCOMMANDS` to the theme method that runs it;
    library errors become usage errors, so the notebook shows their message, not a traceback.
    """

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        missing = set(SUBCOMMANDS) ^ set(handlers)
        if missing:  # a programming error: a theme forgot (or invented) a subcommand
            raise ValueError(f"subcommands without a handler or parser: {sorted(missing)}")
        self.handlers = dict(handlers)

    def parse(self, line: str) -> argparse.Namespace:
        # A fresh parser per line: building one costs microseconds and holds no state.
        try:
            words = shlex.split(line)
        except ValueError as exc:  # shlex: "No closing quotation"
            raise UsageError(f"%container: {exc}") from None
        if words[:1] == ["pin"]:  # argparse's REMAINDER drops leading options: pass all on
            return argparse.Namespace(command="pin", argv=words[1:])
        args = container_parser().parse_args(words)
        if args.command is None:
            raise UsageError(
                "%container needs a subcommand: " + ", ".join(SUBCOMMANDS) + ". See `%container?`."
            )
        return args

    def __call__(self, line: str) -> Any:
        args = self.parse(line)
        try:
            return self.handlers[args.command](args)
        except NbcontainersError as exc:
            raise UsageError(str(exc)) from None
