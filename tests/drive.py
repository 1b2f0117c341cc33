"""Small helpers to drive a real kernel from tests."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager


def run(kc: BlockingKernelClient, code: str, timeout: float = 60) -> tuple[str, dict[str, Any]]:
    """Execute ``code``; return (everything printed to stdout/stderr, the execute_reply content)."""
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, output_hook=hook, timeout=timeout)
    return "".join(out), reply["content"]


def executed(sources: list[str], cwd: Path, timeout: float = 180) -> Any:
    """A notebook of code cells ``sources``, run top to bottom by nbclient on a local
    ``python3`` kernel in ``cwd`` (as papermill or a CI job would)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def cell_text(cell: Any) -> str:
    """A notebook cell's printed output and tracebacks, without terminal colours."""
    parts = [out.get("text", "") for out in cell.outputs]
    parts += ["\n".join(out.get("traceback", [])) for out in cell.outputs]
    return re.sub(r"\x1b\[[0-9;]*m", "", "".join(parts))


@contextmanager
def container_kernel(
    cwd: Path, kernel: str = "nbc-python", **config: Any
) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """Start ``kernel`` (with provisioner ``config`` on top of its kernelspec) in ``cwd``,
    wait until it answers, and shut it down afterwards whatever happens."""
    km = start(cwd, kernel, **config)
    try:
        with connected(km) as kc:
            yield km, kc
    finally:
        km.shutdown_kernel(now=True)


@contextmanager
def connected(km: KernelManager, timeout: float = 60) -> Iterator[BlockingKernelClient]:
    """A client of ``km``'s kernel once it answers; its channels are closed afterwards."""
    kc = km.client()
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=timeout)
        yield kc
    finally:
        kc.stop_channels()


def start(cwd: Path, kernel: str = "nbc-python", **config: Any) -> KernelManager:
    km = KernelManager(kernel_name=kernel)
    if config:
        km.kernel_spec.metadata["kernel_provisioner"]["config"].update(config)
    km.start_kernel(cwd=str(cwd))
    return km


class Frontend:
    """A notebook frontend on a local kernel: sends cells, collects IOPub by parent."""

    def __init__(self, km: KernelManager, kc: BlockingKernelClient) -> None:
        self.km, self.kc = km, kc

    def run(
        self, code: str, stdin: list[str] | None = None, timeout: float = 120
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Execute ``code``; return (reply content, IOPub messages whose parent is this cell)."""
        answers = list(stdin or [])
        msg_id = self.last_msg_id = self.kc.execute(code, allow_stdin=bool(stdin))
        outputs: list[dict[str, Any]] = []
        reply = None
        deadline = time.monotonic() + timeout
        idle = False
        while (reply is None or not idle) and time.monotonic() < deadline:
            if answers:
                try:
                    request = self.kc.stdin_channel.get_msg(timeout=0.01)
                    assert request["msg_type"] == "input_request"
                    outputs.append(request)
                    self.kc.input(answers.pop(0))
                except Exception:
                    pass
            try:
                msg = self.kc.get_iopub_msg(timeout=0.05)
                if msg["parent_header"].get("msg_id") == msg_id:
                    if msg["msg_type"] == "status":
                        idle = msg["content"]["execution_state"] == "idle"
                    else:
                        outputs.append(msg)
            except Exception:
                pass
            if reply is None:
                try:
                    got = self.kc.get_shell_msg(timeout=0.01)
                    if got["parent_header"].get("msg_id") == msg_id:
                        reply = got
                except Exception:
                    pass
        assert reply is not None, f"no reply to {code!r}"
        return reply["content"], outputs

    def interrupted(
        self, code: str, when: Callable[[], bool], timeout: float = 120
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """Run ``code`` as JupyterLab sends it (the cell's id in the request's metadata), and
        interrupt the kernel once ``when()`` is true; return (the reply, or None if there was
        none within ``timeout``, and the cell's IOPub messages). Interrupting is asserted."""
        msg = self.kc.session.msg(
            "execute_request",
            {"code": code, "silent": False, "store_history": True},
            metadata={"cellId": "cell-1"},
        )
        self.kc.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        outputs: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        interrupted = idle = False
        reply = None
        while (reply is None or not idle) and time.monotonic() < deadline:
            try:
                got = self.kc.get_iopub_msg(timeout=0.1)
                if got["parent_header"].get("msg_id") == msg_id:
                    outputs.append(got)
                    idle = got["content"].get("execution_state") == "idle"
            except Exception:
                pass
            if not interrupted and when():
                self.km.interrupt_kernel()
                interrupted = True
            if interrupted and reply is None:
                try:
                    shell = self.kc.get_shell_msg(timeout=0.1)
                    if shell["parent_header"].get("msg_id") == msg_id:
                        reply = shell
                except Exception:
                    pass
        assert interrupted, outputs
        return reply, outputs

    def text(self, code: str, **kw: Any) -> str:
        content, outputs = self.run(code, **kw)
        assert content["status"] == "ok", self.error_text(outputs) or content
        return "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")

    @staticmethod
    def error_text(outputs: list[dict[str, Any]]) -> str:
        return "\n".join(
            "\n".join(m["content"]["traceback"]) for m in outputs if m["msg_type"] == "error"
        )


@contextmanager
def notebook(cwd: Path) -> Iterator[Frontend]:
    """A local ipykernel in ``cwd`` with ``%load_ext nbcontainers`` done, as a Frontend;
    unloaded (which stops its container kernels) and shut down afterwards."""
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(cwd))
    try:
        with connected(km) as kc:
            fe = Frontend(km, kc)
            fe.text("%load_ext nbcontainers")
            yield fe
            fe.run("%unload_ext nbcontainers")
    finally:
        km.shutdown_kernel(now=True)
