"""The launcher's forwarders without an engine: a real local ipykernel on Unix sockets, a real
jupyter_client on the TCP ports of a connection file (or its ipc socket paths), every channel
through the forwarders: the relay (a connection file without keys, what frontends write) and
the CurveZMQ forwarder.

The ports are on 127.0.0.1, where every local user can connect. The attack: another user
(``nobody``) subscribes to the kernel's IOPub while the kernel prints a secret. The ipc sockets
are the user's only, and are opened to everyone by the test to see the peer check hold."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from nbcontainers.launch.peers import peer_uid
from nbcontainers.launch.proxy import KERNEL_PORTS, Ports, Relay, forwarder_for

from .snoop import NOBODY, as_root, endpoint, snoop

Forwarded = tuple[BlockingKernelClient, dict[str, Any], Ports]


@pytest.fixture(params=["relay", "curve", "relay-ipc", "curve-ipc"])
def forwarded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Forwarded]:
    """A local kernel on ipc sockets, reached on tcp ports (or a frontend's own ipc sockets)
    through the forwarder the launcher picks for a connection file without keys (the relay)
    or with CurveZMQ keys."""
    with _kernel_behind(request.param, tmp_path) as ends:
        yield ends


@pytest.fixture(params=["relay", "relay-ipc"])
def relayed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Forwarded]:
    with _kernel_behind(request.param, tmp_path) as ends:
        yield ends


@contextlib.contextmanager
def _kernel_behind(kind: str, tmp_path: Path) -> Iterator[Forwarded]:
    keys = {}
    if kind.startswith("curve"):
        public, secret = zmq.curve_keypair()
        keys = {"curve_publickey": public, "curve_secretkey": secret}
    front = Path(tempfile.mkdtemp(prefix="nbc-f-"))  # short: Unix socket paths are limited
    where = (
        {"transport": "ipc", "ip": str(front / "kernel")}
        if kind.endswith("ipc")
        else {"ip": "127.0.0.1"}
    )
    tcp_file, info = write_connection_file(str(tmp_path / "kernel-tcp.json"), **where, **keys)
    sockets = Path(tempfile.mkdtemp(prefix="nbc-t-"))
    ipc = {
        "transport": "ipc",
        "ip": str(sockets / "k"),
        **KERNEL_PORTS,
        "key": info["key"],
        "signature_scheme": info["signature_scheme"],
    }
    ipc_file = tmp_path / "kernel-ipc.json"
    ipc_file.write_text(json.dumps(ipc))
    kernel = subprocess.Popen([sys.executable, "-m", "ipykernel_launcher", "-f", str(ipc_file)])
    forwarder = forwarder_for(info)
    assert isinstance(forwarder, Relay) == kind.startswith("relay")
    forwarder.bind()
    if kind.endswith("ipc"):  # made the user's alone, whatever the umask
        modes = {(front / f"kernel-{info[name]}").stat().st_mode & 0o777 for name in KERNEL_PORTS}
        assert modes == {0o600}, modes
    forwarder.connect(ipc["ip"])
    kc = BlockingKernelClient(connection_file=tcp_file)
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield kc, dict(info), forwarder
    finally:
        kc.stop_channels()
        kernel.kill()
        kernel.wait()
        forwarder.close()
        for leftover in sockets.iterdir():
            leftover.unlink()
        sockets.rmdir()
        assert not list(front.iterdir())  # the forwarder removed the socket files it made
        front.rmdir()


def _open_to_everyone(info: dict[str, Any]) -> None:
    """Make a frontend's ipc sockets and their folder usable by every user, so what keeps
    ``nobody`` out is the forwarder's own check, not the files' modes (no-op for tcp)."""
    if info.get("transport") != "ipc":
        return
    os.chmod(os.path.dirname(info["ip"]), 0o755)
    for name in KERNEL_PORTS:
        os.chmod(f"{info['ip']}-{info[name]}", 0o666)


def test_shell_iopub_and_heartbeat_pass_through(
    forwarded: Forwarded,
) -> None:
    kc, _, _ = forwarded
    out: list[str] = []
    reply = kc.execute_interactive(
        "print(6 * 7)",
        timeout=30,
        output_hook=lambda m: (
            out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None
        ),
    )
    assert reply["content"]["status"] == "ok"
    assert "".join(out).strip() == "42"  # iopub reached the frontend
    assert kc.hb_channel.is_beating()  # heartbeat pings come back


def test_stdin_requests_reach_the_frontend_that_asked(
    forwarded: Forwarded,
) -> None:
    """The kernel addresses input requests to the shell requester's identity on its stdin
    socket: it reaches the frontend only if both forwarders toward the kernel share one."""
    kc, _, _ = forwarded
    out: list[str] = []
    reply = kc.execute_interactive(
        "print('got', input('name? '))",
        timeout=30,
        allow_stdin=True,
        stdin_hook=lambda m: kc.input("ada"),
        output_hook=lambda m: (
            out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None
        ),
    )
    assert reply["content"]["status"] == "ok"
    assert "got ada" in "".join(out)


def test_control_channel_interrupts_by_message(
    forwarded: Forwarded,
) -> None:
    kc, _, _ = forwarded
    msg = kc.session.msg("kernel_info_request")
    kc.control_channel.send(msg)
    reply = kc.control_channel.get_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
    assert reply["content"]["status"] == "ok"


def test_a_wrong_key_is_still_refused_by_the_kernel(forwarded: Forwarded, tmp_path: Path) -> None:
    """The forwarders sign nothing and check nothing: the kernel's HMAC check still holds."""
    kc, info, _ = forwarded
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**info, "key": "not-the-key"}))
    intruder = BlockingKernelClient(connection_file=str(forged))
    intruder.load_connection_file()
    intruder.start_channels()
    try:
        intruder.kernel_info()
        with pytest.raises(Exception):  # noqa: B017 - queue.Empty: no reply to a forged message
            intruder.get_shell_msg(timeout=3)
    finally:
        intruder.stop_channels()
    assert kc.execute_interactive("1", timeout=30)["content"]["status"] == "ok"


@as_root
def test_another_user_reads_none_of_the_kernels_outputs(
    forwarded: Forwarded, capfd: pytest.CaptureFixture[str]
) -> None:
    kc, info, _ = forwarded
    _open_to_everyone(info)
    secret = f"secret-{uuid.uuid4().hex}"
    out = snoop(info, NOBODY, kc, secret)
    assert out.startswith("GOT 0"), out
    assert secret not in out
    assert kc.execute_interactive("1", timeout=30)["content"]["status"] == "ok"  # unharmed
    if isinstance(forwarded[2], Relay):
        assert f"from uid {NOBODY}: only uid {os.getuid()} may connect" in capfd.readouterr().err


@as_root
def test_the_snoop_reads_outputs_as_the_kernels_own_user(relayed: Forwarded) -> None:
    """The attack above is a real one: the same subscriber run by the kernel's user reads
    the secret through the relay (with Curve keys, only a holder of the keys would)."""
    kc, info, _ = relayed
    _open_to_everyone(info)
    secret = f"secret-{uuid.uuid4().hex}"
    assert secret in snoop(info, os.getuid(), kc, secret)


@as_root
def test_another_users_raw_connection_is_closed_before_any_byte(relayed: Forwarded) -> None:
    kc, info, _ = relayed
    _open_to_everyone(info)
    probe = (
        "import socket,sys; a=sys.argv[1]; s=socket.socket(socket.AF_UNIX) if a.startswith("
        "'ipc') else socket.socket(); s.settimeout(5); s.connect(a[6:] if a.startswith('ipc') "
        "else ('127.0.0.1', int(a.rsplit(':', 1)[1]))); s.sendall(bytes([0xff]+[0]*8+[0x7f]));"
        "print(repr(s.recv(64)))"
    )
    for name in KERNEL_PORTS:
        got = subprocess.run(
            [sys.executable, "-c", probe, endpoint(info, name)],
            user=NOBODY,
            group=NOBODY,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=30,
        )
        # The kernel would answer a ZMTP greeting with its own; the relay closed instead.
        assert got.stdout.strip() in ("b''", ""), (name, got.stdout, got.stderr)
    assert kc.execute_interactive("1", timeout=30)["content"]["status"] == "ok"


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1"])
def test_peer_uid_names_the_connecting_sockets_owner(ip: str) -> None:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        try:
            listener.bind((ip, 0))
        except OSError:
            pytest.skip(f"no {ip} on this host")
        listener.listen(4)
        port = listener.getsockname()[1]
        with socket.create_connection((ip, port), 5):
            conn, _ = listener.accept()
            with conn:
                assert peer_uid(conn) == os.getuid()
        if os.geteuid() == 0:
            client = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    f"import socket,time; s=socket.create_connection(({ip!r}, {port}), 5);"
                    "time.sleep(5)",
                ],
                user=NOBODY,
                group=NOBODY,
                cwd="/",
            )
            try:
                conn, _ = listener.accept()
                with conn:
                    assert peer_uid(conn) == NOBODY
            finally:
                client.kill()
                client.wait()


def test_a_socket_of_no_local_user_is_refused(
    relayed: Forwarded, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A peer whose owner cannot be told (a TCP socket gone from the host's table meanwhile;
    the launcher refuses connection files with other than a loopback ip) is refused like
    another user's."""
    kc, info, _ = relayed
    monkeypatch.setattr("nbcontainers.launch.proxy.peer_uid", lambda conn: None)
    ipc = info.get("transport") == "ipc"
    with socket.socket(socket.AF_UNIX if ipc else socket.AF_INET) as raw:
        raw.settimeout(5)
        raw.connect(
            f"{info['ip']}-{info['shell_port']}" if ipc else ("127.0.0.1", info["shell_port"])
        )
        try:
            raw.sendall(bytes([0xFF] + [0] * 8 + [0x7F]))
            got = raw.recv(64)
        except (BrokenPipeError, ConnectionResetError):  # closed before or with our greeting
            got = b""
        assert got == b""  # the kernel would have answered with its own greeting
    assert "from a socket of no local user" in capfd.readouterr().err
    monkeypatch.undo()
    assert kc.execute_interactive("1", timeout=30)["content"]["status"] == "ok"


@pytest.mark.parametrize("keys", [False, True], ids=["relay", "curve"])
def test_what_cannot_be_listened_on_is_named(keys: bool, tmp_path: Path) -> None:
    """A taken port, an existing socket name (never replaced: it may be another kernel's) and
    a folder that is not there: each a ConfigError naming the address, nothing left behind."""
    from nbcontainers.errors import ConfigError

    extra: dict[str, Any] = {}
    if keys:
        public, secret = zmq.curve_keypair()
        extra = {"curve_publickey": public, "curve_secretkey": secret}
    ports = {name: 10 + n for name, n in KERNEL_PORTS.items()}
    folder = Path(tempfile.mkdtemp(prefix="nbc-b-"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        tcp = {**ports, "ip": "127.0.0.1", "shell_port": taken.getsockname()[1]}
        (folder / "k-14").write_text("someone's")  # the iopub name of the ipc files
        cases = [
            (tcp, f"127.0.0.1:{tcp['shell_port']}: another process took it"),
            ({**ports, "transport": "ipc", "ip": str(folder / "k")}, "k-14: that file exists"),
            ({**ports, "transport": "ipc", "ip": str(folder / "gone" / "k")}, "No such file"),
        ]
        try:
            for info, words in cases:
                forwarder = forwarder_for({**info, **extra})
                with pytest.raises(ConfigError, match=words):
                    forwarder.bind()
                forwarder.close()
            assert [p.name for p in folder.iterdir()] == ["k-14"]  # theirs kept, ours gone
            assert (folder / "k-14").read_text() == "someone's"
        finally:
            shutil.rmtree(folder)
