"""CurveZMQ for kernels on another host: one key pair per kernel, in the connection file.

jupyter_client 8.10 and ipykernel 7 read ``curve_publickey`` and ``curve_secretkey`` (Z85
text) from the connection file. The kernel makes every socket it binds a Curve server with
that pair; the client side (``KernelManager.connect_*``, ``KernelClient``, the heartbeat)
uses the same pair as its own and the public key as the server's. So whoever can read the
connection file can talk to the kernel, as with the HMAC key, and nobody on the wire reads
or forges a message: Curve encrypts and authenticates every frame, HMAC still signs each
message. The pair lives as long as the kernel's connection file (restarts keep it).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError

__all__ = ["ENCRYPTION_MODES", "clear_keys", "ensure_keys", "kernel_command", "wants_curve"]

# "auto": Curve when the kernel may run on another host (EngineFacts.remote); "curve":
# always (also ipc and loopback); "none": never (HMAC signing only).
ENCRYPTION_MODES = ("auto", "curve", "none")


def wants_curve(mode: str, remote: bool) -> bool:
    """Whether a kernel started with ``encryption=mode`` on an engine (``remote`` or not)
    gets Curve keys."""
    if mode not in ENCRYPTION_MODES:
        raise ConfigError(f"Bad encryption {mode!r}: use one of {', '.join(ENCRYPTION_MODES)}.")
    # "none" on a remote engine is honoured: asked for explicitly (a benchmark, a trusted net).
    return mode == "curve" or (mode == "auto" and remote)


def ensure_keys(km: Any) -> None:
    """Give the kernel manager ``km`` a Curve key pair unless it has one (a restart keeps it,
    so connected clients keep working)."""
    import zmq

    if not zmq.has("curve"):
        raise ConfigError(
            "This kernel's traffic must be encrypted (it runs on another host), but this pyzmq "
            "has no CurveZMQ: `pip install --force-reinstall pyzmq` (its wheels bundle "
            "libsodium), or set encryption='none' on a network you trust."
        )
    if getattr(km, "curve_publickey", None) is None:
        public, secret = zmq.curve_keypair()
        km.curve_publickey, km.curve_secretkey = public, secret


def clear_keys(km: Any) -> None:
    """No Curve for this kernel: a key pair left from an earlier start goes."""
    if getattr(km, "curve_publickey", None) is not None:
        km.curve_publickey = km.curve_secretkey = None


def kernel_command(argv: list[str], mounted: str, writable: str) -> list[str]:
    """The kernel's command when its connection file holds Curve keys.

    ipykernel 7.4 rewrites its connection file at start unless the file equals what it would
    write, and with Curve keys it never does (it compares its bytes keys with the file's
    text), so a read-only file (our mount, a Swarm secret) kills it with EROFS. The kernel
    gets a private copy at ``writable`` (in its tmpfs HOME) instead; ``argv`` names
    ``{connection_file}`` where the path goes.
    """
    # cat, not cp: a new file 0600 for the kernel's uid (cp would keep the secret's 0400).
    copy = 'umask 077 && cat "$0" > "$1" && shift && exec "$@"'
    return ["sh", "-c", copy, mounted, writable] + [
        part.replace("{connection_file}", writable) for part in argv
    ]
