"""Run cells in a container kernel on behalf of a notebook's local kernel (the relay).

The container gets the frontend's own request header (with a fresh msg_id: a kernel answers
a repeated msg_id only once, and one cell may send several requests); what it says comes
back through :class:`~.outputs.Outputs`. This module owns the lifecycle and the shell
requests: execute (input requests and interrupts included), internal runs, completion and
inspection. The connection itself is :mod:`.connection`'s; remote errors :mod:`.remote`'s.
"""

from __future__ import annotations

import ast
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from jupyter_client.kernelspec import KernelSpec

from ..errors import ContainerCrashed
from .connection import (
    container_of,
    crash_of,
    exposure,
    make_manager,
    remove_socket_folder,
    wait_for_ready,
)
from .outputs import Outputs
from .remote import RemoteError, raise_if_error, remote_error

# Re-exported: these names were this module's before the relay was split.
__all__ = ["Relay", "RemoteError", "exposure", "remote_error"]

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
        self.km = make_manager(name, kernel_spec)
        self.kc: Any = None
        self.started_at = 0.0
        self.outputs = Outputs(kernel, execution_count)
        # A cell's request whose container idle is still to come: waited for just before the
        # local kernel reports idle (finish_before_idle), not before its reply.
        self._deferred: str | None = None

    @property
    def comms(self) -> dict[str, Any]:
        """The local stand-ins of the container's widget comms, by comm id."""
        return self.outputs.comms

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> None:
        """Start the container kernel and the relay; raise ``ContainerCrashed`` with the
        provisioner's crash report when it does not come up."""
        try:
            self.km.start_kernel(cwd=self.cwd)
        except BaseException:
            remove_socket_folder(self.km)
            raise
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            wait_for_ready(self.kc, timeout)
        except RuntimeError:
            crash = crash_of(self.km)
            self.stop()
            raise ContainerCrashed(
                crash or f"The container kernel {self.name!r} did not start."
            ) from None
        self._start_pump()

    def _start_pump(self) -> None:
        self.started_at = time.time()
        self.outputs.start(self.kc)

    def stop(self, now: bool = False) -> None:
        self.finish()
        self.outputs.stop()
        self.outputs.forget_comms()
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=now)
        remove_socket_folder(self.km)

    def restart(self) -> None:
        self.outputs.stop()
        self.km.restart_kernel(now=False)
        self.kc.wait_for_ready(timeout=120)
        self._start_pump()

    @property
    def alive(self) -> bool:
        return bool(self.km.has_kernel and self.km.is_alive())

    @property
    def container_id(self) -> str | None:
        return container_of(self.km)

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
        self.outputs.expect(msg_id, internal)
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
                        crash = crash_of(self.km)
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

    def finish(self) -> None:
        """Wait until the container is idle after the last cell, so that all it printed is
        re-published (called before the local kernel reports idle, and before any request)."""
        msg_id, self._deferred = self._deferred, None
        if msg_id is not None:
            self.outputs.wait_idle(msg_id)

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
            request_id = uuid.uuid4().hex
            self.outputs.under(request_id, header)
            header = {**header, "msg_id": request_id}
        msg_id = self._request("execute_request", content, header=header)
        self.outputs.counts[msg_id] = self._execution_count()
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
                self.outputs.wait_idle(msg_id)
        result = reply["content"]
        for payload in result.get("payload", []):
            self.kernel.shell.payload_manager.write_payload(payload)
        raise_if_error(result)
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
            self.outputs.wait_idle(msg_id, timeout=2)
        result = reply["content"]
        raise_if_error(result)
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
            self.outputs.forget(msg_id)

    def complete(self, code: str, cursor_pos: int) -> dict[str, Any]:
        return self._ask("complete_request", {"code": code, "cursor_pos": cursor_pos})

    def inspect(self, code: str, cursor_pos: int, detail_level: int = 0) -> dict[str, Any]:
        return self._ask(
            "inspect_request",
            {"code": code, "cursor_pos": cursor_pos, "detail_level": detail_level},
        )
