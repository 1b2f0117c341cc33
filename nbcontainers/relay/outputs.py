"""What the container kernel says, re-published on the notebook's own IOPub from one
background thread: streams, displays, results and widget messages under the frontend's
header; and, for widgets, a local stand-in comm per container comm that forwards what the
frontend sends it. It also tells the relay when the container is idle after a request."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from queue import Empty
from typing import Any

__all__ = ["Outputs"]

# IOPub messages the local kernel already sends for the cell itself (status, execute_input)
# or that become the local exception (error): relaying them would show things twice.
_DROPPED = {"status", "execute_input", "error"}
_COMM = ("comm_open", "comm_msg", "comm_close")
_PARENTS_KEPT = 1024  # late outputs of old cells are rare; memory isn't


class Outputs:
    """The IOPub pump of one relay, and the bookkeeping of its requests.

    ``kernel`` is the local ipykernel: its session signs what is re-published.
    ``execution_count`` gives the local prompt number an ``execute_result`` shows.
    """

    def __init__(self, kernel: Any, execution_count: Callable[[], int]) -> None:
        self.kernel = kernel
        self._execution_count = execution_count
        self.kc: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle: dict[str, threading.Event] = {}
        self._internal: set[str] = set()
        # our request msg_id -> the frontend header its outputs belong under (bounded)
        self._parents: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # our request msg_id -> the local prompt number its execute_result shows
        self.counts: dict[str, int] = {}
        self.comms: dict[str, Any] = {}

    # -- the requests whose outputs and idle status are awaited -----------------------------

    def under(self, request_id: str, header: dict[str, Any]) -> None:
        """Re-publish what request ``request_id`` causes under the frontend's ``header``."""
        self._parents[request_id] = header
        while len(self._parents) > _PARENTS_KEPT:
            self._parents.popitem(last=False)

    def expect(self, msg_id: str, internal: bool) -> None:
        """Watch for the container's idle after ``msg_id``; an ``internal`` request's outputs
        (but for widget messages) are not shown."""
        if internal:
            self._internal.add(msg_id)
        self._idle[msg_id] = threading.Event()

    def forget(self, msg_id: str) -> None:
        self._idle.pop(msg_id, None)
        self._internal.discard(msg_id)

    def wait_idle(self, msg_id: str, timeout: float = 10) -> None:
        """Wait (at most ``timeout`` s; an interrupt ends it) until the container is idle
        after ``msg_id``, so that all it printed has been re-published."""
        event = self._idle.get(msg_id)
        try:
            while event is not None and not event.wait(timeout=0.05):
                timeout -= 0.05
                if timeout <= 0:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            self.forget(msg_id)
            self.counts.pop(msg_id, None)

    # -- the thread -------------------------------------------------------------------------

    def start(self, kc: Any) -> None:
        self.kc = kc
        self._stop.clear()
        self._thread = threading.Thread(target=self._pump, name="nbc-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

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
        if parent_id in self._internal and kind not in _COMM:
            return
        if kind in _DROPPED:
            return
        content = msg["content"]
        if kind == "execute_result":
            count = self.counts.get(parent_id)
            content = {**content, "execution_count": count or self._execution_count()}
        elif kind == "comm_open":
            self._stand_in_comm(content)
        elif kind == "comm_close":
            self.forget_comm(content.get("comm_id", ""))
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

        outputs = self

        class StandIn(BaseComm):
            """Has the container comm's id; what the frontend sends it goes to the container."""

            def publish_msg(self, *args: Any, **kwargs: Any) -> None:
                pass  # the container publishes; this comm never speaks itself

            def handle_msg(self, msg: dict[str, Any]) -> None:
                outputs.forward_to_container(msg)

            def handle_close(self, msg: dict[str, Any]) -> None:
                outputs.forward_to_container(msg)
                outputs.comms.pop(self.comm_id, None)

        comm_id = content["comm_id"]
        stand_in = StandIn(
            comm_id=comm_id, target_name=content.get("target_name", ""), primary=False
        )
        get_comm_manager().register_comm(stand_in)
        self.comms[comm_id] = stand_in

    def forget_comm(self, comm_id: str) -> None:
        from comm import get_comm_manager

        stand_in = self.comms.pop(comm_id, None)
        if stand_in is not None:
            get_comm_manager().comms.pop(comm_id, None)

    def forget_comms(self) -> None:
        for comm_id in list(self.comms):
            self.forget_comm(comm_id)

    def forward_to_container(self, msg: dict[str, Any]) -> None:
        """Send a frontend comm message on, with the frontend's header: callbacks' output in
        the container then names the frontend's message as parent and lands where it should."""
        forwarded = {k: msg[k] for k in ("header", "parent_header", "metadata", "content")}
        forwarded["msg_id"] = msg["header"]["msg_id"]
        forwarded["msg_type"] = msg["header"]["msg_type"]
        self.kc.session.send(
            self.kc.shell_channel.socket, forwarded, buffers=msg.get("buffers") or None
        )
