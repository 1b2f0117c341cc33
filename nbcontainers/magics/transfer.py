"""The transfer theme: `%container push/pull` copy variables between the notebook and its
container kernel, all or nothing. Push sends pickles (:mod:`.pickles`: the notebook's own
objects, into a container it started); pull brings data back (:mod:`.pulldata`: npy/JSON,
never a pickle unless the user says ``--pickle``), because the container is not trusted."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class

from ..errors import ConfigError
from ..rundir import check_private
from .parser import PICKLE_WARNING, Handler
from .pickles import dump_to, remote_helpers, remove_files
from .pulldata import PULL_TYPES, BadTransfer, decode_from, new_base, remove_base
from .state import NotebookState

__all__ = ["TRANSFER_MODULE", "TransferMagics", "helpers_code"]

# The container kernel holds the helpers as this module, outside the user's namespace.
TRANSFER_MODULE = "_nbc_transfer"
# Bumped when the helpers change: a container that holds older ones gets these.
VERSION = 2


@magics_class
class TransferMagics(Magics):
    """Moves variables; a failure on either side leaves both namespaces as they were."""

    def __init__(self, shell: Any, state: NotebookState) -> None:
        super().__init__(shell)
        self.state = state

    def subcommands(self) -> dict[str, Handler]:
        return {"push": self.push, "pull": self.pull}

    def push(self, args: argparse.Namespace) -> None:
        relay = self.state.existing(None)
        user_ns = self.state.shell.user_ns
        missing = [n for n in args.names if n not in user_ns]
        if missing:
            raise UsageError(
                f"No variable named {', '.join(map(repr, missing))} in the "
                "notebook; nothing was pushed."
            )
        bases = {}
        xfer = self.state.transfer_dir()
        try:
            for name in args.names:  # pickle everything first: all or nothing
                obj = user_ns[name]
                try:
                    bases[name] = dump_to(obj, xfer)
                except Exception as exc:
                    raise UsageError(
                        f"Cannot push {name!r}: a {type(obj).__module__}.{type(obj).__qualname__}"
                        f" can't be pickled ({exc}). Recreate it inside the container instead "
                        "(run the code that makes it under `%%container`)."
                    ) from None
            # Unpickle everything before binding any name: all or nothing there too.
            code = helpers_code() + (
                f"__nbc_v = {{n: __import__('sys').modules[{TRANSFER_MODULE!r}].load_from(b) "
                f"for n, b in {bases!r}.items()}}\n"
                "globals().update(__nbc_v)\ndel __nbc_v"
            )
            try:
                relay.run_internal(code)
            except Exception as exc:
                relay.run_internal("globals().pop('__nbc_v', None)")
                raise UsageError(
                    f"The container kernel could not unpickle {', '.join(args.names)} "
                    f"({type(exc).__name__}: {exc}); nothing was pushed. Install what it needs "
                    "there (e.g. `%%container` then `%pip install ...`) and push again."
                ) from None
        finally:
            # The reader deletes what it loaded; this removes what a failure left behind.
            for base in bases.values():
                remove_files(base)

    def pull(self, args: argparse.Namespace) -> None:
        """Bring container variables back as data (npy/JSON): nothing the container sends is
        run here, and only files this notebook named in its own transfer folder are read."""
        relay = self.state.existing(None)
        bad = [n for n in args.names if not n.isidentifier()]
        if bad:
            raise UsageError(
                f"Not a variable name: {', '.join(map(repr, bad))}; nothing was pulled."
            )
        xfer = self.state.transfer_dir()
        try:  # the container can chmod the folder it shares: refuse one opened up to others
            check_private(Path(xfer), os.getuid(), "Pull again after `%container restart`.")
        except ConfigError as exc:
            raise UsageError(f"Cannot pull: {exc}") from None
        # Our names, not the container's: it never names a path the notebook opens.
        bases = {name: new_base() for name in args.names}
        code = helpers_code() + (
            f"__nbc_missing = [n for n in {args.names!r} if n not in globals()]\n"
            "if __nbc_missing: raise NameError(', '.join(map(repr, __nbc_missing)))\n"
            f"__nbc_t = __import__('sys').modules[{TRANSFER_MODULE!r}]\n"
            f"for __nbc_n, __nbc_b in {bases!r}.items(): "
            f"__nbc_t.encode_to(globals()[__nbc_n], {xfer!r}, __nbc_b, {bool(args.pickle)!r})"
        )
        # The names above live in the user's namespace there for a moment; never longer.
        cleanup = (
            "for __nbc_n in ('__nbc_missing', '__nbc_t', '__nbc_b', '__nbc_n'): "
            "globals().pop(__nbc_n, None)"
        )
        try:
            try:
                relay.run_internal(code)
            except Exception as exc:
                relay.run_internal(cleanup)
                raise UsageError(_pull_failure(args.names, exc)) from None
            relay.run_internal(cleanup)
            try:
                loaded = {
                    name: decode_from(xfer, base, allow_pickle=bool(args.pickle))
                    for name, base in bases.items()
                }
            except BadTransfer as exc:
                raise UsageError(
                    f"The container's answer for {', '.join(args.names)} is not a valid "
                    f"transfer ({exc}); nothing was pulled, nothing of it was run here."
                ) from None
            except Exception as exc:  # --pickle: whatever unpickling raised
                raise UsageError(
                    f"The notebook could not unpickle {', '.join(args.names)} "
                    f"({type(exc).__name__}: {exc}); nothing was pulled. Install what it "
                    "needs locally and pull again."
                ) from None
        finally:
            # Only names we chose, in our folder; links are removed, never followed.
            for base in bases.values():
                remove_base(xfer, base)
        self.state.shell.user_ns.update(loaded)  # only once every variable has arrived


def _pull_failure(names: list[str], exc: Exception) -> str:
    """The message for a pull the container refused (the text comes from the container:
    shown, never run)."""
    kind = type(exc).__name__
    if kind == "NameError":
        return f"No variable named {exc} in the container kernel; nothing was pulled."
    if kind == "NotData":
        return (
            f"Cannot pull {', '.join(names)}: {exc} is not data that `%container pull` moves "
            f"safely ({PULL_TYPES}). {PICKLE_WARNING}"
        )
    return f"Cannot pull {', '.join(names)}: {kind}: {exc}"


def helpers_code() -> str:
    """Code that defines the transfer helpers in the container once (again after a
    restart), as a module outside the user's namespace."""
    return (
        "import sys as __nbc_sys\n"
        f"if getattr(__nbc_sys.modules.get({TRANSFER_MODULE!r}), 'VERSION', 0) != {VERSION}:\n"
        "    import types as __nbc_types\n"
        f"    __nbc_m = __nbc_types.ModuleType({TRANSFER_MODULE!r})\n"
        f"    exec({remote_helpers()!r}, __nbc_m.__dict__)\n"
        f"    __nbc_sys.modules[{TRANSFER_MODULE!r}] = __nbc_m\n"
        "    del __nbc_types, __nbc_m\n"
        "del __nbc_sys\n"
    )
