"""Run cells in a container kernel on behalf of a notebook's local kernel, relaying everything.

The container gets the frontend's own request header (with a fresh msg_id: a kernel answers
a repeated msg_id only once, and one cell may send several requests), and one background
thread re-publishes what it says on the local kernel's IOPub under the frontend's header.

The class is long because lifecycle, the IOPub pump, widget comms and shell requests all
share one state (the client, the msg_id -> frontend header map, the idle events); split, that
state would have to be passed between the parts on every message.
"""

from __future__ import annotations

import ast
import contextlib
import os
import shutil
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager

from ..errors import ConfigError, ContainerCrashed
from ..kernels.connection import PrivateDir, other_login_users
from ..rundir import check_private

__all__ = ["Relay", "RemoteError", "exposure", "remote_error", "warm_start"]

# IOPub messages the local kernel already sends for the cell itself (status, execute_input)
# or that become the local exception (error): relaying them would show things twice.
_DROPPED = {"status", "execute_input", "error"}


class RemoteError(Exception):
    """Base of exceptions re-raised from a container cell; IPython shows the remote traceback."""

    remote_traceback: tuple[str, ...] = ()

    def _render_traceback_(self) -> list[str]:
        return list(self.remote_traceback)


_ERROR_TYPES: dict[str, type[RemoteError]] = {}


def remote_error(ename: str, evalue: str, traceback: list[str]) -> RemoteError:
    """An exception whose class is named after the remote ``ename`` ("ZeroDivisionError")."""
    cls = _ERROR_TYPES.get(ename)
    if cls is None:
        name = ename if ename.isidentifier() else "RemoteError"
        cls = type(name, (RemoteError,), {"__module__": "nbcontainers.remote"})
        _ERROR_TYPES[ename] = cls
    exc = cls(evalue)
    exc.remote_traceback = tuple(traceback)
    return exc


class _OneSpec(KernelSpecManager):
    """Jupyter's kernelspec lookup, answered with one spec that lives only in memory."""

    def __init__(self, spec: KernelSpec) -> None:
        super().__init__()
        self.spec = spec

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return self.spec


_HOOKED = "_nbcontainers_relays"


def _finish_before_idle(kernel: Any, relay: Relay) -> bool:
    """Have ``kernel`` (an ipykernel) call ``relay.finish()`` after each shell handler, before
    it publishes idle; False where it has no such hook (then the relay waits at once)."""
    relays = getattr(kernel, _HOOKED, None)
    if relays is None:
        original = getattr(kernel, "post_handler_hook", None)
        if not callable(original):
            return False
        relays = weakref.WeakSet()

        def post_handler_hook() -> None:
            for each in list(relays):
                each.finish()
            original()

        kernel.post_handler_hook = post_handler_hook
        setattr(kernel, _HOOKED, relays)
    relays.add(relay)
    return True


def _manager(name: str, kernel_spec: KernelSpec) -> KernelManager:
    """The kernel manager of a relay's kernel. The spec is built in memory (the magics make
    it): no kernelspec install needed.

    Its sockets are ipc files in a 0700 folder: a TCP port on 127.0.0.1 would let any user of
    the host subscribe to the kernel's IOPub and read every output (the key only signs).
    The nbcontainers provisioner places them itself (ipc in its private folder, or TCP with
    CurveZMQ for a kernel on another host); any other kernelspec gets a folder here.
    """
    km = KernelManager(
        kernel_name=kernel_spec.name or name, kernel_spec_manager=_OneSpec(kernel_spec)
    )
    provisioner = (kernel_spec.metadata or {}).get("kernel_provisioner", {})
    if provisioner.get("provisioner_name") != "nbcontainers":
        private = PrivateDir.open()
        km.transport, km.ip = "ipc", private.ipc_ip
        _SOCKET_FOLDERS[km] = private.path
    return km


# The folders _manager made (a kernel manager's own, removed with it).
_SOCKET_FOLDERS: weakref.WeakKeyDictionary[KernelManager, Path] = weakref.WeakKeyDictionary()


def _remove_socket_folder(km: KernelManager) -> None:
    """Remove the private folder :func:`_manager` made for a plain kernelspec's sockets."""
    folder = _SOCKET_FOLDERS.pop(km, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def exposure(kernel: Any) -> str | None:
    """Why other users of this host could read what the local kernel ``kernel`` publishes
    (the relay re-publishes container outputs there), or None when they can't."""
    app = getattr(kernel, "parent", None)
    transport, ip = getattr(app, "transport", None), getattr(app, "ip", None)
    if transport is None or ip is None:
        return None  # not an ipykernel started from a connection file: nothing to judge
    others = other_login_users()
    if not others:
        return None
    if transport == "tcp":
        where = f"TCP {ip}"
    else:
        try:
            check_private(Path(ip).parent, os.getuid(), "")
            return None
        except (ConfigError, OSError):
            where = f"ipc sockets in {Path(ip).parent}, a folder other users can open,"
    return (
        f"this notebook's kernel publishes its outputs (and those relayed from the container) "
        f"on {where} where {len(others)} other user(s) of this host can subscribe and read "
        "them. Run kernels on ipc in private folders: c.KernelManager.transport = 'ipc' "
        "(examples/hub/jupyterhub_config.py does)."
    )


def wait_for_ready(kc: Any, timeout: float) -> None:
    """Return once ``kc``'s kernel has answered kernel_info and the request's status has come
    on IOPub (both channels connected), with what IOPub brought until then (the kernel's
    start) discarded. jupyter_client's own wait_for_ready() then waits for 0.2 s of IOPub
    silence, a fifth of a second on every ``%container use`` that nothing here needs: the
    kernel's start output is all before that status."""
    deadline = time.monotonic() + timeout
    sent: set[str] = set()
    answered = False
    while time.monotonic() < deadline:
        sent.add(kc.kernel_info())
        try:
            while not answered and time.monotonic() < deadline:
                answered = kc.get_shell_msg(timeout=1)["parent_header"].get("msg_id") in sent
            seen = False
            while not seen and time.monotonic() < deadline:
                seen = kc.get_iopub_msg(timeout=0.1)["parent_header"].get("msg_id") in sent
            if not seen:
                break
        except Empty:  # no answer yet, or a late IOPub subscriber missed it: ask again
            if not kc.is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info") from None
            continue
        with contextlib.suppress(Empty):
            for _ in range(10_000):  # what is queued now, not a kernel that never stops talking
                kc.get_iopub_msg(timeout=0)
        return
    raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")


def warm_start(name: str, kernel_spec: KernelSpec, cwd: str) -> None:
    """Start and stop one kernel of ``kernel_spec`` in ``cwd`` exactly as a relay would: its
    pool (if its config has one) learns what to keep, and fills before the first use."""
    km = _manager(name, kernel_spec)
    try:
        km.start_kernel(cwd=cwd)
        km.shutdown_kernel(now=True)
    finally:
        _remove_socket_folder(km)


class Relay:
    """One container kernel serving one notebook's local kernel.

    ``kernel`` is the local ipykernel (``get_ipython().kernel``): its session signs what the
    relay re-publishes, its ``raw_input``/``getpass`` answer the container's input requests.
    """

    def __init__(
        self,
        name: str,
        kernel_spec: KernelSpec,
        kernel: Any,
        *,
        cwd: str,
        execution_count: Callable[[], int],
    ) -> None:
        self.name = name
        self.kernel = kernel
        self.cwd = cwd
        self._execution_count = execution_count
        self.km = _manager(name, kernel_spec)
        self.kc: Any = None
        self.started_at = 0.0
        self._stop = threading.Event()
        self._pump_thread: threading.Thread | None = None
        self._idle: dict[str, threading.Event] = {}
        self._internal: set[str] = set()
        # our request msg_id -> the frontend header its outputs belong under (bounded)
        self._parents: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # our request msg_id -> the local prompt number its execute_result shows
        self._counts: dict[str, int] = {}
        # A cell's request whose container idle is still to come: waited for just before the
        # local kernel reports idle (finish_before_idle), not before its reply.
        self._deferred: str | None = None
        self.comms: dict[str, Any] = {}

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> None:
        """Start the container kernel and the relay; raise ``ContainerCrashed`` with the
        provisioner's crash report when it does not come up."""
        try:
            self.km.start_kernel(cwd=self.cwd)
        except BaseException:
            _remove_socket_folder(self.km)
            raise
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            wait_for_ready(self.kc, timeout)
        except RuntimeError:
            crash = getattr(self.km.provisioner, "last_crash", None)
            self.stop()
            raise ContainerCrashed(
                crash or f"The container kernel {self.name!r} did not start."
            ) from None
        self._start_pump()

    def _start_pump(self) -> None:
        self.started_at = time.time()
        self._stop.clear()
        self._pump_thread = threading.Thread(target=self._pump, name="nbc-relay", daemon=True)
        self._pump_thread.start()

    def _stop_pump(self) -> None:
        self._stop.set()
        if self._pump_thread is not None:
            self._pump_thread.join(timeout=2)
            self._pump_thread = None

    def stop(self, now: bool = False) -> None:
        self.finish()
        self._stop_pump()
        for comm in list(self.comms.values()):
            self._forget_comm(comm.comm_id)
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=now)
        _remove_socket_folder(self.km)

    def restart(self) -> None:
        self._stop_pump()
        self.km.restart_kernel(now=False)
        self.kc.wait_for_ready(timeout=120)
        self._start_pump()

    @property
    def alive(self) -> bool:
        return bool(self.km.has_kernel and self.km.is_alive())

    @property
    def container_id(self) -> str | None:
        return getattr(self.km.provisioner, "container_id", None)

    # -- IOPub: one thread re-publishes what the container says -----------------------------

    def _pump(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.kc.iopub_channel.get_msg(timeout=0.1)
            except Empty:
                continue
            except Exception:  # channel closed under us while stopping
                if self._stop.is_set():
                    return
                continue
            try:
                self._relay(msg)
            except Exception as exc:  # never let one bad message kill the relay
                self.kernel.log.warning("nbcontainers relay: %s", exc)

    def _relay(self, msg: dict[str, Any]) -> None:
        kind = msg["msg_type"]
        parent = msg["parent_header"]
        parent_id = parent.get("msg_id", "")
        if kind == "status":
            if msg["content"].get("execution_state") == "idle" and parent_id in self._idle:
                self._idle[parent_id].set()
            return
        if parent_id in self._internal and kind not in ("comm_open", "comm_msg", "comm_close"):
            return
        if kind in _DROPPED:
            return
        content = msg["content"]
        if kind == "execute_result":
            count = self._counts.get(parent_id)
            content = {**content, "execution_count": count or self._execution_count()}
        elif kind == "comm_open":
            self._stand_in_comm(content)
        elif kind == "comm_close":
            self._forget_comm(content.get("comm_id", ""))
        self.kernel.session.send(
            self.kernel.iopub_socket,
            kind,
            content,
            parent=self._parents.get(parent_id, parent),
            metadata=msg.get("metadata"),
            buffers=msg.get("buffers") or None,
        )

    # -- widgets: a local stand-in comm per container comm, forwarding the frontend ---------

    def _stand_in_comm(self, content: dict[str, Any]) -> None:
        from comm import get_comm_manager
        from comm.base_comm import BaseComm

        relay = self

        class StandIn(BaseComm):
            """Has the container comm's id; what the frontend sends it goes to the container."""

            def publish_msg(self, *args: Any, **kwargs: Any) -> None:
                pass  # the container publishes; this comm never speaks itself

            def handle_msg(self, msg: dict[str, Any]) -> None:
                relay.forward_to_container(msg)

            def handle_close(self, msg: dict[str, Any]) -> None:
                relay.forward_to_container(msg)
                relay.comms.pop(self.comm_id, None)

        comm_id = content["comm_id"]
        stand_in = StandIn(
            comm_id=comm_id, target_name=content.get("target_name", ""), primary=False
        )
        get_comm_manager().register_comm(stand_in)
        self.comms[comm_id] = stand_in

    def _forget_comm(self, comm_id: str) -> None:
        from comm import get_comm_manager

        stand_in = self.comms.pop(comm_id, None)
        if stand_in is not None:
            get_comm_manager().comms.pop(comm_id, None)

    def forward_to_container(self, msg: dict[str, Any]) -> None:
        """Send a frontend comm message on, with the frontend's header: callbacks' output in
        the container then names the frontend's message as parent and lands where it should."""
        forwarded = {k: msg[k] for k in ("header", "parent_header", "metadata", "content")}
        forwarded["msg_id"] = msg["header"]["msg_id"]
        forwarded["msg_type"] = msg["header"]["msg_type"]
        self.kc.session.send(
            self.kc.shell_channel.socket, forwarded, buffers=msg.get("buffers") or None
        )

    # -- shell: execute, complete, inspect ---------------------------------------------------

    def _request(
        self,
        msg_type: str,
        content: dict[str, Any],
        header: dict[str, Any] | None = None,
        internal: bool = False,
    ) -> str:
        msg = self.kc.session.msg(msg_type, content)
        if header is not None:
            msg["header"] = {**header, "msg_type": msg_type}
            msg["msg_id"] = header["msg_id"]
        msg_id = str(msg["header"]["msg_id"])
        self.finish()  # what the last cell printed comes first
        if internal:
            self._internal.add(msg_id)
        self._idle[msg_id] = threading.Event()
        self.kc.shell_channel.send(msg)
        return msg_id

    def _wait_reply(self, msg_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the reply to ``msg_id``, answering input requests; a local interrupt
        interrupts the container and keeps waiting for its reply."""
        import zmq

        shell, stdin = self.kc.shell_channel, self.kc.stdin_channel
        # One poller over both sockets, read with the channels' own sync calls: the
        # client's run_sync wrappers cost more than the whole relay otherwise.
        poller = zmq.Poller()
        poller.register(shell.socket, zmq.POLLIN)
        poller.register(stdin.socket, zmq.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        next_alive_check = time.monotonic() + 1.0
        while True:
            try:
                ready = dict(poller.poll(50))
                if stdin.socket in ready:
                    self._answer_input(stdin.get_msg(timeout=0))
                if shell.socket in ready:
                    reply = shell.get_msg(timeout=0)
                    if reply["parent_header"].get("msg_id") == msg_id:
                        return dict(reply)
                    continue
                now = time.monotonic()
                if deadline is not None and now > deadline:
                    raise TimeoutError(f"no reply from container kernel {self.name!r}")
                if now > next_alive_check:
                    next_alive_check = now + 1.0
                    if not self.alive:
                        crash = getattr(self.km.provisioner, "last_crash", None)
                        raise ContainerCrashed(crash or f"The container kernel {self.name!r} died.")
            except KeyboardInterrupt:
                # Keep waiting: the container answers with a KeyboardInterrupt error reply.
                self.km.interrupt_kernel()

    def _answer_input(self, request: dict[str, Any]) -> None:
        # The local kernel asks its own frontend, so the prompt appears under the cell.
        if request["msg_type"] != "input_request":
            return
        prompt = request["content"].get("prompt", "")
        if request["content"].get("password"):
            value = self.kernel.getpass(prompt)
        else:
            value = self.kernel.raw_input(prompt)
        self.kc.input(value)

    def _wait_idle(self, msg_id: str, timeout: float = 10) -> None:
        event = self._idle.get(msg_id)
        try:
            while event is not None and not event.wait(timeout=0.05):
                timeout -= 0.05
                if timeout <= 0:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            self._idle.pop(msg_id, None)
            self._internal.discard(msg_id)
            self._counts.pop(msg_id, None)

    def finish(self) -> None:
        """Wait until the container is idle after the last cell, so that all it printed is
        re-published (called before the local kernel reports idle, and before any request)."""
        msg_id, self._deferred = self._deferred, None
        if msg_id is not None:
            self._wait_idle(msg_id)

    def execute(self, code: str) -> dict[str, Any]:
        """Run ``code`` as the current cell; raise the remote error as a local one."""
        parent = self.kernel.get_parent("shell") or {}
        # The frontend's own header: what the container publishes then names the cell as
        # its parent, so outputs land under it without any rewriting.
        header = parent.get("header") if parent.get("header", {}).get("msg_id") else None
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            # As the frontend asked: a frontend without stdin gets no input() prompt either.
            "allow_stdin": bool(parent.get("content", {}).get("allow_stdin", False)),
            "stop_on_error": True,
        }
        if header is not None:
            # A fresh msg_id per request (a kernel answers one msg_id once), mapped back to
            # the frontend's header when its outputs are re-published.
            self._parents[request_id := uuid.uuid4().hex] = header
            while len(self._parents) > 1024:  # late outputs of old cells are rare; memory isn't
                self._parents.popitem(last=False)
            header = {**header, "msg_id": request_id}
        msg_id = self._request("execute_request", content, header=header)
        self._counts[msg_id] = self._execution_count()
        deferred = False
        try:
            reply = self._wait_reply(msg_id)
            # Outputs may trail the reply on IOPub: the cell ends once the container is idle,
            # so nothing it printed lands under the next cell. A cell that succeeded waits
            # for that while the local kernel sends its own reply (frontends take outputs
            # until the idle status); a failed one first, so its outputs precede the error.
            deferred = reply["content"].get("status") == "ok" and _finish_before_idle(
                self.kernel, self
            )
        finally:
            if deferred:
                self._deferred = msg_id
            else:
                self._wait_idle(msg_id)
        result = reply["content"]
        for payload in result.get("payload", []):
            self.kernel.shell.payload_manager.write_payload(payload)
        if result.get("status") == "error":
            raise remote_error(
                result.get("ename", "RemoteError"),
                result.get("evalue", ""),
                result.get("traceback", []),
            )
        return dict(result)

    def run_internal(
        self,
        code: str,
        timeout: float | None = None,
        user_expressions: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run code the user did not write (push/pull helpers): nothing it prints is shown.

        Returns the ``user_expressions`` evaluated after it, as Python values (they must be
        literals: str, numbers, containers of them).
        """
        content = {
            "code": code,
            "silent": True,
            "store_history": False,
            "user_expressions": user_expressions or {},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        msg_id = self._request("execute_request", content, internal=True)
        try:
            reply = self._wait_reply(msg_id, timeout=timeout)
        finally:
            self._wait_idle(msg_id, timeout=2)
        result = reply["content"]
        if result.get("status") == "error":
            raise remote_error(
                result.get("ename", "RemoteError"),
                result.get("evalue", ""),
                result.get("traceback", []),
            )
        values = {}
        for key, value in (result.get("user_expressions") or {}).items():
            if value.get("status") != "ok":
                raise remote_error(
                    value.get("ename", "RemoteError"),
                    value.get("evalue", ""),
                    value.get("traceback", []),
                )
            # literal_eval, never eval: the text comes from code running in the container.
            values[key] = ast.literal_eval(value["data"]["text/plain"])
        return values

    def _ask(self, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
        """A quick request of our own (no outputs), answered within 5 s."""
        msg_id = self._request(msg_type, content, internal=True)
        try:
            return dict(self._wait_reply(msg_id, timeout=5)["content"])
        finally:
            self._idle.pop(msg_id, None)
            self._internal.discard(msg_id)

    def complete(self, code: str, cursor_pos: int) -> dict[str, Any]:
        return self._ask("complete_request", {"code": code, "cursor_pos": cursor_pos})

    def inspect(self, code: str, cursor_pos: int, detail_level: int = 0) -> dict[str, Any]:
        return self._ask(
            "inspect_request",
            {"code": code, "cursor_pos": cursor_pos, "detail_level": detail_level},
        )
