"""`%container` / `%%container`: switch a running notebook's cells to a container kernel."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import re
import shlex
import shutil
import time
from pathlib import Path
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel

from ..catalog import load_catalog
from ..errors import NbcontainersError, UnknownImage, did_you_mean
from ..kernels.kernelspecs import kernel_json
from ..kernels.relay import Relay
from ..serving.serialize import FORMATS
from .transfer import dump_to, load_from, make_transfer_dir, remote_helpers

__all__ = ["ContainerMagics", "load", "unload"]

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
]
# Cells starting with these run locally even while a container kernel is active.
_LOCAL_PREFIXES = (
    "%container",
    "%%container",
    "%load_ext",
    "%unload_ext",
    "%reload_ext",
    "%export-serving",
    "%export_serving",
)
# `server = %export-serving ...` runs locally too.
_LOCAL_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*\s*=\s*%(container|export-serving|export_serving)\b")
_TRANSFER_MODULE = "_nbc_transfer"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        prog = self.prog.split()[0]
        raise UsageError(f"{prog}: {message}. See `{prog}?`.")


def _parser() -> _Parser:
    parser = _Parser(prog="%container", add_help=False)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    use = sub.add_parser("use")
    use.add_argument("name")
    use.add_argument("--gpus", default=None)
    use.add_argument("--memory", default=None)
    use.add_argument("--cpus", type=float, default=None)
    for name in ("local", "list"):
        sub.add_parser(name)
    for name in ("status", "stop", "restart"):
        sub.add_parser(name).add_argument("name", nargs="?")
    logs = sub.add_parser("logs")
    logs.add_argument("name", nargs="?")
    logs.add_argument("--tail", type=int, default=50)
    for name in ("push", "pull"):
        sub.add_parser(name).add_argument("names", nargs="+")
    snap = sub.add_parser("snapshot")
    snap.add_argument("dir", nargs="?", default="snapshot")
    snap.add_argument("--minimal", action="store_true")
    snap.add_argument("--build", action="store_true")
    snap.add_argument("--verify", action="store_true")
    snap.add_argument("--wheels", action="store_true")
    return parser


def _export_parser() -> _Parser:
    parser = _Parser(prog="%export-serving", add_help=False)
    parser.add_argument("name")
    parser.add_argument("--example", default="")
    parser.add_argument("--dir", default=None)
    parser.add_argument("--image", default=None)
    parser.add_argument("--format", default="auto", choices=FORMATS)
    parser.add_argument("--method", default=None)
    parser.add_argument("--init-args", default="{}")
    device = parser.add_mutually_exclusive_group()
    device.add_argument("--gpu", dest="gpu", action="store_true", default=None)
    device.add_argument("--cpu", dest="gpu", action="store_false")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--run", action="store_true")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--push", default=None, metavar="REGISTRY")
    return parser


@magics_class
class ContainerMagics(Magics):
    """Holds the notebook's container kernels and which one (if any) runs its cells."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.ip: Any = shell  # typed Any: the kernel's shell carries .kernel
        self.relays: dict[str, Relay] = {}
        self.active: str | None = None
        self._xfer: str | None = None
        self._original_complete: Any = None
        self._original_inspect: Any = None
        self._exit_hook = False

    # -- the magic --------------------------------------------------------------------------

    @line_cell_magic
    def container(self, line: str, cell: str | None = None) -> Any:
        """Run this notebook's cells in a container kernel.

        %container use NAME [--gpus all|N|IDS] [--memory 8g] [--cpus 2]
            From now on, cells run in a container kernel for catalog image (or kernelspec)
            NAME, started in the notebook's folder. Outputs, errors, input(), interrupts,
            widgets, completion and inspection all work as in a local kernel.
        %container use ./DIR      the same for a snapshot folder: its image snapshot-DIR is
            built (once) and registered first
        %container local          cells run locally again; the container keeps running
        %container status [NAME]  image, digest, uptime, CPU/memory, GPUs
        %container list           this notebook's container kernels
        %container stop [NAME]    shut a container kernel down (back to local if it was active)
        %container restart [NAME] a fresh kernel in a fresh container
        %container logs [NAME] [--tail N]
        %container push VAR...    copy notebook variables into the container kernel
        %container pull VAR...    copy container variables into the notebook
        %container snapshot [DIR] [--minimal] [--wheels] [--build] [--verify]
            write DIR (default ./snapshot): a Dockerfile, lock, environment.json and project
            files that plain `docker build DIR` turns back into the active container kernel's
            environment (or the local kernel's). --verify rebuilds it and compares packages;
            --build also registers it as image snapshot-DIR for `%container use`;
            --wheels vendors every distribution, so it builds with no index at all;
            --minimal keeps only what the session imported and what that requires.
            conda installs are pinned from pip's index (same version) or refused by name;
            environment.json also records GPUs (nvidia-smi) and torch/CUDA/cuDNN facts.
        %%container [NAME]        run just this cell in the active (or NAME's) container

        Variables move as pickles (protocol 5) through a shared tmpfs folder: large arrays
        are memory-mapped, not copied through the messaging layer.
        """
        if cell is not None:
            return self._run_cell(line.strip() or None, cell)
        try:
            args = _parser().parse_args(shlex.split(line))
        except ValueError as exc:
            raise UsageError(f"%container: {exc}") from None
        if args.command is None:
            raise UsageError(
                "%container needs a subcommand: " + ", ".join(SUBCOMMANDS) + ". See `%container?`."
            )
        try:
            return getattr(self, "_cmd_" + args.command)(args)
        except NbcontainersError as exc:
            raise UsageError(str(exc)) from None

    def export_serving(self, line: str) -> Any:
        """Ship a model from this notebook as a tested serving image.

        %export-serving NAME --example EXPR [--dir DIR] [--image REF] [--gpu|--cpu]
                        [--format auto|torch.export|safetensors|skops|source|pickle]
                        [--method predict_proba] [--init-args JSON]
                        [--no-build] [--run [--port P]] [--push REGISTRY]

        NAME is a torch nn.Module, a scikit-learn estimator or pipeline, or a function, in the
        active container kernel (after `%container use`) or else in this notebook. EXPR is an
        example batch (e.g. X_test[:4]): it gives the input signature, and after the build a
        smoke test sends it to the image and checks the answer equals the notebook's.
        Writes DIR (default ./serving-NAME): Dockerfile, requirements.lock, model/, server/,
        compose.yaml, k8s/ and kserve.yaml. The server speaks the Open Inference Protocol v2
        (/v2/models/NAME/infer), plain JSON (/predict), /openapi.json and /metrics.
        --run leaves it running on 127.0.0.1 and returns a handle with .url, .predict(rows)
        and .stop(). Pickle is used only with --format pickle.
        """
        from ..runtimes import get_runtime
        from ..serving.export import ExportOptions, export

        try:
            args, extra = _export_parser().parse_known_args(shlex.split(line))
            if extra and args.example and not any(e.startswith("-") for e in extra):
                args.example = " ".join([args.example, *extra])  # X[:4, :2] unquoted
            elif extra:
                raise UsageError(f"%export-serving: unrecognized arguments: {' '.join(extra)}.")
            init_args = json.loads(args.init_args)
        except ValueError as exc:
            raise UsageError(f"%export-serving: {exc}") from None
        options = ExportOptions(
            example=args.example,
            format=args.format,
            gpu=args.gpu,
            method=args.method,
            init_args=init_args,
            image=args.image,
            folder=Path(args.dir) if args.dir else None,
            build=not args.no_build,
            run=args.run,
            port=args.port,
            push=args.push,
            source=self._notebook_path(),
        )
        try:
            evaluate, work_dir = self._evaluator()
            result = export(
                evaluate,
                args.name,
                options,
                work_dir=work_dir,
                runtime=get_runtime(),
            )
        except NbcontainersError as exc:
            raise UsageError(str(exc)) from None
        return result if args.run else None

    def _evaluator(self) -> tuple[Any, str]:
        """``evaluate(code, expression)`` in the active container kernel, else this one;
        and a folder both it and this process can write."""
        relay = self.relays.get(self.active or "")
        if relay is not None:
            active = relay

            def remote(code: str, expression: str) -> Any:
                return active.run_internal(code, user_expressions={"v": expression})["v"]

            return remote, self._transfer_dir()
        namespace: dict[str, Any] = {"get_ipython": lambda: self.ip}

        def local(code: str, expression: str) -> Any:
            exec(code, namespace)  # our own capture code, never user input
            return eval(expression, namespace)

        return local, self._transfer_dir()

    def _notebook_path(self) -> str:
        """The notebook's path where the frontend says it (JupyterLab sets __session__),
        else the folder the notebook runs in."""
        session = self.ip.user_ns.get("__session__") or os.environ.get("JPY_SESSION_NAME")
        return str(session or os.getcwd())

    # -- subcommands ------------------------------------------------------------------------

    def _cmd_use(self, args: argparse.Namespace) -> None:
        overrides = {
            k: v
            for k, v in (("gpus", args.gpus), ("mem_limit", args.memory), ("cpus", args.cpus))
            if v is not None
        }
        name = args.name
        if name.startswith((".", "/", "~")) or os.sep in name:
            name = self._snapshot_image(name)
        relay = self._relay(name, overrides)
        self.active = relay.name
        print(
            f"Cells now run in container kernel {relay.name!r} "
            f"({(relay.container_id or '')[:12]}). `%container local` to switch back."
        )

    def _snapshot_image(self, where: str) -> str:
        """The catalog image of the snapshot folder ``where``: built first if it is not yet,
        registered (as `--build` does), its name returned."""
        from ..build import build_image
        from ..runtimes import get_runtime
        from ..snapshot import is_snapshot_folder, snapshot_image

        folder = Path(where).expanduser()
        folder = (folder if folder.is_absolute() else Path.cwd() / folder).resolve()
        if not is_snapshot_folder(folder):
            raise UsageError(
                f"{where} is not a snapshot folder (no Dockerfile and environment.json from "
                f"`%container snapshot`). Write one with `%container snapshot {where}`, or "
                f"name a catalog image: {', '.join(load_catalog())}."
            )
        image = snapshot_image(folder)
        runtime = get_runtime()
        if runtime.image_info(image.ref) is None:
            print(f"Building image {image.name} ({image.ref}) from {folder}...", flush=True)
            started = time.monotonic()
            build_image(image, runtime)
            print(f"Built {image.ref} in {time.monotonic() - started:.0f} s.", flush=True)
        return _register_snapshot_image(folder)

    def _cmd_local(self, args: argparse.Namespace) -> None:
        if self.active is None:
            print("Cells already run in the local kernel.")
            return
        print(
            f"Cells run in the local kernel again; container kernel {self.active!r} keeps "
            "running (`%container stop` ends it)."
        )
        self.active = None

    def _cmd_list(self, args: argparse.Namespace) -> None:
        if not self.relays:
            print(
                "No container kernels. Start one with `%container use NAME`; images: "
                + ", ".join(load_catalog())
            )
            return
        for name, relay in self.relays.items():
            state = "active" if name == self.active else ("idle" if relay.alive else "dead")
            print(
                f"{name:<20} {state:<7} {(relay.container_id or '-')[:12]}  "
                f"up {_duration(time.time() - relay.started_at)}"
            )

    def _cmd_status(self, args: argparse.Namespace) -> None:
        relay = self._existing(args.name)
        prov: Any = relay.km.provisioner
        runtime = prov.runtime
        cid = relay.container_id or ""
        image = prov.catalog_image
        info = runtime.image_info(image.ref)
        stats = runtime.stats(cid) if hasattr(runtime, "stats") else {}
        gpus = prov.gpu_request  # what the container was given: a GPURequest or None
        lines = [
            f"kernel      {relay.name} ({'active' if relay.name == self.active else 'idle'})",
            f"image       {image.name}: {image.ref}",
            f"digest      {_digest(info)}",
            f"container   {cid[:12]}  up {_duration(time.time() - relay.started_at)}",
            f"cpu         {_cpu_percent(stats)}",
            f"memory      {_memory(stats)}",
            "gpus        " + _gpus(gpus),
        ]
        print("\n".join(lines))

    def _cmd_stop(self, args: argparse.Namespace) -> None:
        relay = self._existing(args.name)
        relay.stop()
        del self.relays[relay.name]
        if self.active == relay.name:
            self.active = None
        print(f"Stopped container kernel {relay.name!r}; cells run in the local kernel.")

    def _cmd_restart(self, args: argparse.Namespace) -> None:
        relay = self._existing(args.name)
        relay.restart()
        print(f"Restarted container kernel {relay.name!r} ({(relay.container_id or '')[:12]}).")

    def _cmd_logs(self, args: argparse.Namespace) -> None:
        relay = self._existing(args.name)
        prov: Any = relay.km.provisioner
        print(prov.runtime.logs(relay.container_id or "", tail=args.tail))

    def _cmd_push(self, args: argparse.Namespace) -> None:
        relay = self._existing(None)
        missing = [n for n in args.names if n not in self.ip.user_ns]
        if missing:
            raise UsageError(
                f"No variable named {', '.join(map(repr, missing))} in the "
                "notebook; nothing was pushed."
            )
        bases = {}
        try:
            for name in args.names:  # pickle everything first: all or nothing
                obj = self.ip.user_ns[name]
                try:
                    bases[name] = dump_to(obj, self._transfer_dir())
                except Exception as exc:
                    raise UsageError(
                        f"Cannot push {name!r}: a {type(obj).__module__}.{type(obj).__qualname__}"
                        f" can't be pickled ({exc}). Recreate it inside the container instead "
                        "(run the code that makes it under `%%container`)."
                    ) from None
            # Unpickle everything before binding any name: all or nothing there too.
            code = self._helpers_code() + (
                f"__nbc_v = {{n: __import__('sys').modules[{_TRANSFER_MODULE!r}].load_from(b) "
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
            for base in bases.values():
                _remove_files(base)

    def _cmd_pull(self, args: argparse.Namespace) -> None:
        relay = self._existing(None)
        code = self._helpers_code() + (
            f"__nbc_missing = [n for n in {args.names!r} if n not in globals()]\n"
            "if __nbc_missing: raise NameError(', '.join(map(repr, __nbc_missing)))\n"
            f"__nbc_t = __import__('sys').modules[{_TRANSFER_MODULE!r}]\n"
            f"__nbc_bases = {{n: __nbc_t.dump_to(globals()[n], {self._transfer_dir()!r}) "
            f"for n in {args.names!r}}}"
        )
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
                _remove_files(base)
            raise UsageError(
                f"The notebook could not unpickle {', '.join(args.names)} "
                f"({type(exc).__name__}: {exc}); nothing was pulled. Install what it needs "
                "locally and pull again."
            ) from None
        self.ip.user_ns.update(loaded)  # only once every variable has arrived

    def _cmd_snapshot(self, args: argparse.Namespace) -> None:
        from ..runtimes import get_runtime
        from ..snapshot import build_and_verify, take_snapshot

        relay = self.relays.get(self.active or "")
        runtime = get_runtime()
        prov: Any = relay.km.provisioner if relay is not None else None
        image_ref: str | None = prov.catalog_image.ref if prov is not None else None
        evaluate, wheel_dir = self._evaluator()
        folder = Path(args.dir).expanduser()
        if not folder.is_absolute():
            folder = Path.cwd() / folder
        written, snap = take_snapshot(
            evaluate,
            folder,
            wheel_dir=wheel_dir,
            minimal=args.minimal,
            image_ref=image_ref,
            runtime=runtime,
            vendor_all=args.wheels,
        )
        kept = len(json.loads((written / "environment.json").read_text())["packages"])
        where = relay.name if relay else "the local kernel"
        print(
            f"Snapshot of {where} written to {written} ({kept} distributions). "
            f"Rebuild it with `docker build {written}`."
        )
        if args.build or args.verify:
            ref, differences = build_and_verify(written, snap, runtime)
            if differences:
                raise UsageError(
                    "The rebuilt image differs from the live kernel:\n  " + "\n  ".join(differences)
                )
            print(f"Built {ref}: its packages match the live kernel (0 differences).")
            if args.build:
                name = _register_snapshot_image(written)
                print(f"Registered as image {name!r}: `%container use {name}`.")

    @staticmethod
    def _helpers_code() -> str:
        """Code that defines the transfer helpers in the container once (again after a
        restart), as a module outside the user's namespace."""
        return (
            "import sys as __nbc_sys\n"
            f"if {_TRANSFER_MODULE!r} not in __nbc_sys.modules:\n"
            "    import types as __nbc_types\n"
            f"    __nbc_m = __nbc_types.ModuleType({_TRANSFER_MODULE!r})\n"
            f"    exec({remote_helpers()!r}, __nbc_m.__dict__)\n"
            f"    __nbc_sys.modules[{_TRANSFER_MODULE!r}] = __nbc_m\n"
            "    del __nbc_types, __nbc_m\n"
            "del __nbc_sys\n"
        )

    def _transfer_dir(self) -> str:
        if self._xfer is None:
            self._xfer = str(make_transfer_dir())
        return self._xfer

    def _kernel_spec(self, name: str, overrides: dict[str, Any]) -> tuple[str, KernelSpec]:
        catalog = load_catalog()
        try:
            image = catalog[name]  # also takes the kernelspec name, "nbc-python"
        except UnknownImage:
            image = None
        if image is not None:
            image_name = image.name
            spec = KernelSpec(**kernel_json(image), resource_dir="")
            spec.name = image.kernel_name
        else:
            manager = KernelSpecManager()
            try:
                spec = manager.get_kernel_spec(name)
            except NoSuchKernel:
                known = set(catalog) | set(manager.find_kernel_specs())
                raise UsageError(
                    f"Unknown image or kernel {name!r}.{did_you_mean(name, known)} "
                    f"Catalog images: {', '.join(catalog)}."
                ) from None
            image_name = name
        provisioner = spec.metadata.get("kernel_provisioner", {})
        if provisioner.get("provisioner_name") == "nbcontainers":
            config = provisioner.setdefault("config", {})
            config.update(overrides)
            mounts = list(config.get("extra_mounts", []))
            xfer = self._transfer_dir()
            config["extra_mounts"] = [*mounts, f"{xfer}:{xfer}:rw"]
        elif overrides:
            raise UsageError(
                f"--gpus/--memory/--cpus only apply to container images, not kernel {name!r}."
            )
        return image_name, spec

    def _relay(self, name: str, overrides: dict[str, Any]) -> Relay:
        image_name, spec = self._kernel_spec(name, overrides)
        relay = self.relays.get(image_name)
        if relay is not None and relay.alive and not overrides:
            return relay
        if relay is not None:
            relay.stop()
        kernel = self.ip.kernel
        relay = Relay(
            image_name,
            spec,
            kernel,
            cwd=os.getcwd(),
            execution_count=lambda: int(self.ip.displayhook.prompt_count),
        )
        relay.start()
        if not self._exit_hook:
            # Registered after the first start, so it runs before the provisioner's own exit
            # hook (atexit is last-in, first-out): the local kernel's exit ends its containers.
            atexit.register(self.shutdown, now=True)
            self._exit_hook = True
        self.relays[image_name] = relay
        return relay

    def _existing(self, name: str | None) -> Relay:
        name = name or self.active
        if name is None:
            if len(self.relays) == 1:
                return next(iter(self.relays.values()))
            raise UsageError(
                "No container kernel is active: start one with "
                "`%container use NAME` (images: " + ", ".join(load_catalog()) + ")."
            )
        if name.startswith("nbc-") and name[4:] in self.relays:
            name = name[4:]
        if name not in self.relays:
            raise UsageError(
                f"No container kernel {name!r} in this notebook."
                f"{did_you_mean(name, self.relays)} `%container list` shows them."
            )
        return self.relays[name]

    def _run_cell(self, name: str | None, cell: str) -> None:
        try:
            relay = self._relay(name, {}) if name else self._existing(None)
        except NbcontainersError as exc:
            raise UsageError(str(exc)) from None
        relay.execute(cell)

    # -- cell routing, completion and inspection ---------------------------------------------

    def route(self, lines: list[str]) -> list[str]:
        """Input transformer: while a container is active, every cell becomes %%container."""
        if self.active is None or not lines:
            return lines
        first = next((ln.lstrip() for ln in lines if ln.strip()), "")
        if not first or first.startswith(_LOCAL_PREFIXES) or _LOCAL_ASSIGNMENT.match(first):
            return lines
        return ["%%container\n", *lines]

    def do_complete(self, code: str, cursor_pos: int) -> Any:
        relay = self.relays.get(self.active or "")
        line = code[:cursor_pos].rsplit("\n", 1)[-1].lstrip()
        if relay is not None and relay.alive and not line.startswith(_LOCAL_PREFIXES):
            try:
                return relay.complete(code, cursor_pos)
            except Exception as exc:
                self.ip.kernel.log.debug("container completion failed: %s", exc)
        return self._original_complete(code, cursor_pos)

    def do_inspect(
        self, code: str, cursor_pos: int, detail_level: int = 0, omit_sections: Any = ()
    ) -> Any:
        relay = self.relays.get(self.active or "")
        if relay is not None and relay.alive:
            try:
                return relay.inspect(code, cursor_pos, detail_level)
            except Exception as exc:
                self.ip.kernel.log.debug("container inspection failed: %s", exc)
        return self._original_inspect(code, cursor_pos, detail_level, omit_sections)

    def complete_magic(self, _shell: Any, event: Any) -> list[str]:
        """Tab completion for `%container …`: subcommands, then image/kernel names."""
        words = event.line.split()
        at_new_word = event.line.endswith(" ")
        position = len(words) - (0 if at_new_word else 1)
        if position <= 1:
            return SUBCOMMANDS
        if words[1] in ("use",) and position == 2:
            return sorted(load_catalog())
        if words[1] in ("status", "stop", "restart", "logs") and position == 2:
            return sorted(self.relays)
        if words[1] == "push":
            return sorted(n for n in self.ip.user_ns if not n.startswith("_"))
        return []

    def shutdown(self, now: bool = False) -> None:
        """Stop every container kernel of this notebook (``now``: kill, don't ask)."""
        for relay in list(self.relays.values()):
            try:
                relay.stop(now=now)
            except Exception as exc:  # the engine may be gone already
                self.ip.log.debug("stopping %s failed: %s", relay.name, exc)
        self.relays.clear()
        self.active = None
        if self._xfer:
            shutil.rmtree(self._xfer, ignore_errors=True)
            self._xfer = None


def _remove_files(base: str) -> None:
    import glob

    for path in glob.glob(base + ".*"):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _register_snapshot_image(folder: Path) -> str:
    """Add the snapshot folder to the user's image catalog; return the image name."""
    from ..catalog import user_config_path
    from ..snapshot import snapshot_image

    name = str(snapshot_image(folder).name)
    path = user_config_path()
    data = json.loads(path.read_text()) if path.is_file() else {"images": {}}
    data.setdefault("images", {})[name] = {
        "build": str(folder),
        "display_name": f"Snapshot {folder.name} (container)",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return name


def _gpus(request: Any) -> str:
    if request is None:
        return "none"
    if request.device_ids:
        return "devices " + ",".join(request.device_ids)
    return "all" if request.count == -1 else str(request.count)


def _digest(info: Any) -> str:
    if info is None:
        return "?"
    return str(info.repo_digests[0] if info.repo_digests else info.id)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _cpu_percent(stats: Any) -> str:
    try:
        cpu, pre = stats["cpu_stats"], stats["precpu_stats"]
        delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
        system = cpu["system_cpu_usage"] - pre.get("system_cpu_usage", 0)
        cores = cpu.get("online_cpus") or 1
        return f"{100.0 * delta / system * cores:.1f}%" if system > 0 else "0.0%"
    except (KeyError, TypeError):
        return "?"


def _memory(stats: Any) -> str:
    try:
        used, limit = stats["memory_stats"]["usage"], stats["memory_stats"]["limit"]
        return f"{used / 2**20:.0f} MiB of {limit / 2**30:.1f} GiB"
    except (KeyError, TypeError):
        return "?"


_STATE_ATTR = "_nbcontainers_magics"


def load(shell: Any) -> None:
    """Register the magics, the routing transformer, completion and inspection (idempotent)."""
    if getattr(shell, _STATE_ATTR, None) is not None:
        return
    magics = ContainerMagics(shell)
    shell.register_magics(magics)
    for name in ("export-serving", "export_serving"):
        shell.register_magic_function(magics.export_serving, "line", name)
    shell.input_transformers_cleanup.append(magics.route)
    shell.set_hook("complete_command", magics.complete_magic, str_key="%container")
    kernel = getattr(shell, "kernel", None)
    if kernel is not None:
        magics._original_complete = kernel.do_complete
        magics._original_inspect = kernel.do_inspect
        kernel.do_complete = magics.do_complete
        kernel.do_inspect = magics.do_inspect
    setattr(shell, _STATE_ATTR, magics)


def unload(shell: Any) -> None:
    """Undo :func:`load`: stop this notebook's container kernels, run cells locally again."""
    magics: ContainerMagics | None = getattr(shell, _STATE_ATTR, None)
    if magics is None:
        return
    magics.shutdown()
    if magics.route in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(magics.route)
    kernel = getattr(shell, "kernel", None)
    if kernel is not None and magics._original_complete is not None:
        kernel.do_complete = magics._original_complete
        kernel.do_inspect = magics._original_inspect
    for kind in ("line", "cell"):
        shell.magics_manager.magics[kind].pop("container", None)
    for name in ("export-serving", "export_serving"):
        shell.magics_manager.magics["line"].pop(name, None)
    dispatcher = shell.strdispatchers.get("complete_command")
    if dispatcher is not None:
        dispatcher.strs.pop("%container", None)
    setattr(shell, _STATE_ATTR, None)
