"""The transfer theme: `%container push/pull` copy variables between the notebook and its
container kernel, all or nothing, through the files of :mod:`.pickles`."""

from __future__ import annotations

import argparse
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class

from .parser import Handler
from .pickles import dump_to, load_from, remote_helpers, remove_files
from .state import NotebookState

__all__ = ["TRANSFER_MODULE", "TransferMagics", "helpers_code"]

# The container kernel holds the helpers as this module, outside the user's namespace.
TRANSFER_MODULE = "_nbc_transfer"


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
        relay = self.state.existing(None)
        code = helpers_code() + (
            f"__nbc_missing = [n for n in {args.names!r} if n not in globals()]\n"
            "if __nbc_missing: raise NameError(', '.join(map(repr, __nbc_missing)))\n"
            f"__nbc_t = __import__('sys').modules[{TRANSFER_MODULE!r}]\n"
            f"__nbc_bases = {{n: __nbc_t.dump_to(globals()[n], {self.state.transfer_dir()!r}) "
            f"for n in {args.names!r}}}"
        )
        # The names above live in the user's namespace there for a moment; never longer.
        cleanup = (
            "for __nbc_n in ('__nbc_missing', '__nbc_t', '__nbc_bases', '__nbc_n'): "
            "globals().pop(__nbc_n, None)"
        )
        try:
            bases = relay.run_internal(code, user_expressions={"bases": "__nbc_bases"})
        except Exception as exc:
            relay.run_internal(cleanup)
            if type(exc).__name__ == "NameError":
                raise UsageError(
                    f"No variable named {exc} in the container kernel; nothing was pulled."
                ) from None
            raise UsageError(
                f"Cannot pull {', '.join(args.names)}: {type(exc).__name__}: {exc}"
            ) from None
        relay.run_internal(cleanup)
        try:
            loaded = {name: load_from(base) for name, base in bases["bases"].items()}
        except Exception as exc:
            for base in bases["bases"].values():
                remove_files(base)
            raise UsageError(
                f"The notebook could not unpickle {', '.join(args.names)} "
                f"({type(exc).__name__}: {exc}); nothing was pulled. Install what it needs "
                "locally and pull again."
            ) from None
        self.state.shell.user_ns.update(loaded)  # only once every variable has arrived


def helpers_code() -> str:
    """Code that defines the transfer helpers in the container once (again after a
    restart), as a module outside the user's namespace."""
    return (
        "import sys as __nbc_sys\n"
        f"if {TRANSFER_MODULE!r} not in __nbc_sys.modules:\n"
        "    import types as __nbc_types\n"
        f"    __nbc_m = __nbc_types.ModuleType({TRANSFER_MODULE!r})\n"
        f"    exec({remote_helpers()!r}, __nbc_m.__dict__)\n"
        f"    __nbc_sys.modules[{TRANSFER_MODULE!r}] = __nbc_m\n"
        "    del __nbc_types, __nbc_m\n"
        "del __nbc_sys\n"
    )
