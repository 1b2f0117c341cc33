"""What a user reads when a kernel container ends on its own: exit code, the signal that
killed it, whether it ran out of memory, and the last lines it printed."""

from __future__ import annotations

import signal

from ..runtimes.base import ContainerState

__all__ = ["crash_report"]


def crash_report(state: ContainerState, image_name: str, mem_limit: str, log_tail: str) -> str:
    """One paragraph for the server log (and ``%container`` errors) about an exited kernel.

    ``mem_limit`` is the kernel's setting ("" for none). Under a limit, exit code 137 (SIGKILL)
    is read as an OOM kill even when the engine's OOM flag is not set: engines do not always
    set it.
    """
    oom = state.oom_killed or (state.exit_code == 137 and bool(mem_limit))
    code = state.exit_code
    how = f"exited with code {code}" if code is not None else f"died ({state.status})"
    # Shells and docker-init report death by signal N as exit code 128 + N.
    if code is not None and code > 128 and code - 128 in signal.valid_signals():
        how += f" (killed by {signal.Signals(code - 128).name})"
    parts = [f"Kernel container {state.name} ({image_name}) {how}."]
    if oom:
        parts.append(
            "It was killed for running out of memory (OOM"
            + (f", limit {mem_limit}" if mem_limit else "")
            + "): raise c.ContainerProvisioner.mem_limit or use less memory."
        )
    else:
        parts.append("OOM-killed: no.")
    if state.error:  # what the engine says beyond the code, e.g. the cluster node was lost
        parts.append(f"Reason: {state.error}.")
    tail = log_tail.rstrip()
    return " ".join(parts) + "\nLast log lines:\n" + (tail or "(no output)")
