"""The serving app in-process under hostile input (issue 22), beside the real-image attacks of
test_attack_image.py: the JSON pre-check is linear whatever the body holds, hostile shapes
and values are 4xx that leak nothing, the batch queue and the bytes held are bounded (503
with Retry-After), a body that never finishes is a 408, a non-batchable model is called per
request, metrics labels stay bounded, and health answers while a large body is decoded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nbcontainers.serving.image import BadRequest, Limits, Server, check_json, decode_infer
from nbcontainers.serving.image.grpc_service import decode_grpc_infer
from nbcontainers.serving.image.offload import decode_request, encode_reply
from nbcontainers.serving.image.serve import available_cpus
from nbcontainers.serving.server import server_source
from tests.serving.test_serving_unit import started, write_model

LEAKS = re.compile(
    r"Traceback|Error:|Exception|/opt/|/usr/|site-packages|\.py\b|numpy|dtype\(", re.IGNORECASE
)
META: dict[str, Any] = {
    "name": "m",
    "signature": {
        "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "output-0", "datatype": "FP32", "shape": [-1]}],
    },
}


async def call(
    app: Server, method: str, path: str, body: bytes = b"", headers: Any = (), receive: Any = None
) -> tuple[int, dict[bytes, bytes], Any]:
    sent: list[dict[str, Any]] = []

    async def whole() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    await app(scope, receive or whole, send)
    text = sent[1]["body"].decode()
    return (
        sent[0]["status"],
        dict(sent[0]["headers"]),
        text if path == "/metrics" else json.loads(text),
    )


ATTACKS = {
    "escaped quotes, unterminated": lambda n: b'{"a": "' + b'\\"' * (n // 2),
    "bare quotes": lambda n: b'"' * n,
    "quote backslash pairs": lambda n: b'"\\' * (n // 2),
    "strings with escapes": lambda n: b'["' + b'a\\"' * (n // 3) + b'"]',
    "brackets": lambda n: b"[" * n,
    "commas": lambda n: b"[" + b"1," * (n // 2) + b"1]",
}


@pytest.mark.parametrize("make", ATTACKS.values(), ids=list(ATTACKS))
def test_the_json_precheck_is_linear_in_the_body(make: Any) -> None:
    def seconds(size: int) -> float:
        body, best = make(size), float("inf")
        for _ in range(3):
            started = time.perf_counter()
            with contextlib.suppress(BadRequest):
                check_json(body, 1 << 30)
            best = min(best, time.perf_counter() - started)
        return best

    # The quadratic regex took 4.8 s on 32 KB of escaped quotes.
    assert seconds(32 << 10) < 0.05
    small, large = seconds(256 << 10), seconds(2 << 20)
    assert large < 1.0, f"2 MiB took {large:.2f} s"
    # 8x the bytes: linear is ~8x the time, quadratic 64x (a floor for timer noise).
    assert large / max(small, 2e-3) < 20, (small, large)


HOSTILE_SHAPES = [[1] * 65, [0, 1 << 62], [1 << 62, 0], [0, 1 << 62, 1 << 62], [0] * 33]


@pytest.mark.parametrize("shape", HOSTILE_SHAPES, ids=str)
def test_hostile_shapes_are_4xx_that_name_the_shape(shape: list[int]) -> None:
    tensor = {"name": "input-0", "shape": shape, "datatype": "FP32"}
    size = 4 * math.prod(shape)  # FP32
    header = json.dumps({"inputs": [tensor | {"parameters": {"binary_data_size": size}}]})
    for raw, header_length in (
        (json.dumps({"inputs": [tensor | {"data": [0.0] * math.prod(shape)}]}).encode(), None),
        (header.encode() + b"\0" * size, len(header)),
    ):
        with pytest.raises(BadRequest) as caught:
            decode_infer(raw, header_length, META, 1 << 21)
        assert 400 <= caught.value.status < 500 and "shape" in str(caught.value)
        assert not LEAKS.search(str(caught.value)), caught.value


def test_bad_values_and_model_failures_leak_nothing(tmp_path: Path) -> None:
    code = "import numpy as np\ndef f(x):\n    raise OSError('/secret/path/model.bin is gone')\n"
    app = Server(str(write_model(tmp_path, {}, code)))

    async def scenario() -> None:
        await started(app)
        bodies = [
            {"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": d}]}
            for d in (["a", "b"], [[1], [2, 3]], [1e40, 1], [{"x": 1}, 2])
        ]
        for body in bodies:
            status, _, reply = await call(
                app, "POST", "/v2/models/m/infer", json.dumps(body).encode()
            )
            assert 400 <= status < 500 and not LEAKS.search(reply["error"]), reply
        for raw in (b'[[1, "x"]]', b"[[1, 2], [3]]", b"[[1e999999, 2]]", b"\xff\xfe"):
            status, _, reply = await call(app, "POST", "/predict", raw)
            assert 400 <= status < 500 and not LEAKS.search(reply["error"]), (raw, reply)
        # The model's own failure: its words (a path here) stay in the log.
        status, _, reply = await call(app, "POST", "/predict", b"[[1, 2]]")
        assert status == 422 and "/secret" not in reply["error"], reply

    asyncio.run(scenario())


def test_metrics_labels_name_only_routes_that_exist(tmp_path: Path) -> None:
    app = Server(str(write_model(tmp_path, {}, "def f(x):\n    return x.sum(axis=1)\n")))

    async def scenario() -> None:
        await started(app)
        for i in range(1, 150):
            await call(app, "POST", "/predict" + "/" * i, b"not json")
            await call(app, "POST", f"/v2/models/m/versions/{i}/infer", b"{}")
            await call(app, "GET", f"/x{i}")
            await call(app, "POST", f"/v2/models/m/infer/{'/' * i}", b"[")
        _, _, metrics = await call(app, "GET", "/metrics")
        series = [line for line in metrics.splitlines() if line.startswith("nbc_requests_total{")]
        assert len(series) < 12, series
        assert 'route="/predict",status="400"' in metrics and 'route="(other)"' in metrics

    asyncio.run(scenario())


SLOW = (
    "import time, numpy as np\ndef f(x):\n    time.sleep(0.2)\n"
    "    return np.full(len(x), len(x), dtype='float32')\n"
)


def test_a_full_queue_is_503_with_retry_after(tmp_path: Path) -> None:
    app = Server(str(write_model(tmp_path, {"batchable": False}, SLOW)), limits=Limits(max_queue=2))

    async def scenario() -> None:
        await started(app)
        answers = await asyncio.gather(
            *(call(app, "POST", "/predict", b"[[1, 2]]") for _ in range(8))
        )
        statuses = sorted(status for status, _, _ in answers)
        # At most two wait (the third arrives before the model has taken the first): the
        # rest are told to come back instead of waiting longer.
        assert statuses.count(200) in (2, 3) and statuses.count(503) >= 5, statuses
        busy = next(a for a in answers if a[0] == 503)
        assert busy[1][b"retry-after"] == b"1" and "NBC_MAX_QUEUE" in busy[2]["error"]

    asyncio.run(scenario())


@pytest.mark.parametrize("batchable", [False, True])
def test_batches_honour_batchable(tmp_path: Path, batchable: bool) -> None:
    # The model answers each row with the size of the batch it was called with.
    app = Server(str(write_model(tmp_path, {"batchable": batchable}, SLOW)))

    async def scenario() -> None:
        await started(app)
        answers = await asyncio.gather(
            *(call(app, "POST", "/predict", b"[[1, 2]]") for _ in range(5))
        )
        sizes = [reply["predictions"][0] for _, _, reply in answers]
        if batchable:
            assert max(sizes) > 1, sizes  # requests that queued shared a call
        else:
            assert sizes == [1.0] * 5, sizes  # never another client's rows beside its own

    asyncio.run(scenario())


def test_a_body_that_never_finishes_is_408(tmp_path: Path) -> None:
    app = Server(
        str(write_model(tmp_path, {}, "def f(x):\n    return x.sum(axis=1)\n")),
        limits=Limits(body_timeout=0.3),
    )
    parts = [{"type": "http.request", "body": b"[[1, ", "more_body": True}]

    async def trickle() -> dict[str, Any]:
        if parts:
            return parts.pop()
        await asyncio.sleep(3600)  # slowloris: the rest never comes
        raise AssertionError

    async def scenario() -> None:
        await started(app)
        begun = time.monotonic()
        status, headers, reply = await call(app, "POST", "/predict", receive=trickle)
        assert status == 408 and "NBC_BODY_TIMEOUT" in reply["error"]
        assert headers[b"connection"] == b"close" and time.monotonic() - begun < 2
        assert app.budget.held == 0  # what it had read is released

    asyncio.run(scenario())


def test_bytes_held_across_requests_are_bounded(tmp_path: Path) -> None:
    app = Server(
        str(write_model(tmp_path, {}, "def f(x):\n    return x.sum(axis=1)\n")),
        limits=Limits(max_body=1000, max_buffered=1000),
    )
    gate = asyncio.Event()

    def slow_body() -> Any:
        chunks = [b"[[1, 2]" + b" " * 590, b"]"]

        async def receive() -> dict[str, Any]:
            chunk = chunks.pop(0)
            if not chunks:
                await gate.wait()
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

        return receive

    async def scenario() -> None:
        await started(app)
        first = asyncio.ensure_future(call(app, "POST", "/predict", receive=slow_body()))
        await asyncio.sleep(0.05)
        status, headers, reply = await call(app, "POST", "/predict", receive=slow_body())
        assert status == 503 and "NBC_MAX_BUFFERED_BYTES" in reply["error"], reply
        assert headers[b"retry-after"] == b"1"
        gate.set()
        assert (await first)[0] == 200
        assert app.budget.held == 0

    asyncio.run(scenario())


async def probe_health(app: Server, done: asyncio.Event, latencies: list[float]) -> None:
    """A probe every 5 ms until ``done``: the time from one answer to the next is how long the
    loop kept a health check waiting (a blocked loop runs no probe at all meanwhile)."""
    last = time.perf_counter()
    while not done.is_set():
        assert (await call(app, "GET", "/v2/health/live"))[0] == 200
        now = time.perf_counter()
        latencies.append(now - last)
        last = now
        await asyncio.sleep(0.005)


def blocking_time(work: Any) -> float:
    """How long ``work`` holds this thread, the best of three: what a loop running it inline
    would keep every health probe waiting, on this machine at this moment."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def assert_health_kept_answering(latencies: list[float], at_least: int, blocking: float) -> None:
    """No probe held for as long as the work would block the loop (``blocking``, measured in
    the same run, so a loaded machine slows both), and nine in ten within the 50 ms budget
    or a quarter of that time, whichever is longer: a blocked loop holds one probe for the
    whole decode or encode (0.26-0.32 s on an idle machine here)."""
    latencies.sort()
    assert len(latencies) > at_least, latencies
    assert latencies[-1] < 0.6 * blocking, (blocking, latencies[-5:])
    assert latencies[int(len(latencies) * 0.9)] < max(0.05, blocking / 4), (blocking, latencies)


def test_health_answers_while_a_large_body_is_decoded(tmp_path: Path) -> None:
    app = Server(str(write_model(tmp_path, {}, "def f(x):\n    return x.sum(axis=1)\n")))
    rows = np.random.default_rng(0).random((300_000, 2)).round(6).tolist()
    body = json.dumps({"instances": rows}).encode()  # ~6 MB: hundreds of ms to decode
    latencies: list[float] = []

    async def scenario() -> None:
        await started(app)
        done = asyncio.Event()
        prober = asyncio.ensure_future(probe_health(app, done, latencies))
        for _ in range(2):  # the first starts the decoding process
            status, _, reply = await call(app, "POST", "/predict", body)
            assert status == 413 and "NBC_MAX_ROWS" in reply["error"], reply
        done.set()
        await prober
        await call(app, "GET", "/metrics")
        app.offload.shutdown()

    asyncio.run(scenario())
    # What the server's own decoding costs when run inline, as a blocked loop would run it.
    decode = (app.meta, app.max_elements)
    held = blocking_time(lambda: decode_request("predict", body, None, *decode))
    assert_health_kept_answering(latencies, at_least=20, blocking=held)


def test_grpc_messages_that_are_not_requests_are_400(tmp_path: Path) -> None:
    pytest.importorskip("google.protobuf")
    for raw in (b"\xff" * 10, b"\x0a\x05hello", b"\x2a\x03\x1a\x01\xff", b"\x0a\x01m" + b"\x2a"):
        with pytest.raises(BadRequest) as caught:
            decode_grpc_infer(raw, META, 1 << 21)
        assert 400 <= caught.value.status < 500 and not LEAKS.search(str(caught.value))


def test_available_cpus_honours_the_cgroup_quota(tmp_path: Path) -> None:
    mine = len(os.sched_getaffinity(0))
    assert available_cpus(str(tmp_path)) == mine  # no cgroup files: the affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(str(tmp_path)) == mine
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(str(tmp_path)) == 1  # half a CPU is still one worker
    (tmp_path / "cpu.max").write_text(f"{mine * 300000} 100000\n")
    assert available_cpus(str(tmp_path)) == mine  # a quota over the affinity: the affinity
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(str(tmp_path)) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def shipped_server(tmp_path: Path, code: str, **env: str) -> Iterator[tuple[str, int]]:
    """server.main() as the image's CMD runs it, from the shipped one-file server, on a free
    port of 127.0.0.1 with the model ``code`` and the ``env`` limits: (its url, its pid)."""
    pytest.importorskip("uvicorn")
    pytest.importorskip("httptools")
    model = write_model(tmp_path, {}, code)
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "server.py").write_text(server_source())
    port = _free_port()
    run = f"import sys; sys.path.insert(0, {str(tmp_path / 'srv')!r}); import server; server.main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", run],
        env={**os.environ, "NBC_MODEL_DIR": str(model), "NBC_HOST": "127.0.0.1",
             "NBC_PORT": str(port), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_shipped_server_runs_workers_and_cuts_slow_clients_off(tmp_path: Path) -> None:
    env = {"NBC_WORKERS": "2", "NBC_HEADER_TIMEOUT": "1", "NBC_MAX_CONCURRENCY": "3"}
    with shipped_server(tmp_path, "def f(x):\n    return x.sum(axis=1)\n", **env) as (url, pid):
        port = int(url.rsplit(":", 1)[1])
        for _ in range(100):  # the first worker may answer before the second is up
            names = subprocess.run(
                ["ps", "-o", "comm=", "--ppid", str(pid)], capture_output=True, text=True
            ).stdout.split()
            if names.count("nbc-worker") == 2:
                break
            time.sleep(0.2)
        assert names.count("nbc-worker") == 2, names
        # New connections land on either worker; /metrics (from either) counts them all.
        for _ in range(12):
            with urllib.request.urlopen(f"{url}/v2/health/live", timeout=10) as reply:
                assert reply.status == 200
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
            metrics = reply.read().decode()
        assert 'nbc_requests_total{route="/v2/health/live",status="200"} 12.0' in metrics
        assert "nbc_model_ready 1.0" in metrics
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # never the blank line
            s.settimeout(5)
            begun = time.monotonic()
            reply = s.recv(4096)
            assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - begun < 3, reply
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-pad: " + b"a" * 70_000 + b"\r\n")
            s.settimeout(5)
            assert s.recv(4096).startswith(b"HTTP/1.1 431")


def test_health_answers_while_a_large_answer_is_encoded(tmp_path: Path) -> None:
    # 1000 rows x 500 values of output: a JSON reply of ~10 MB, encoded off the loop.
    code = (
        "import numpy as np\ndef f(x):\n    return np.random.default_rng(0).random((len(x), 500))\n"
    )
    app = Server(str(write_model(tmp_path, {}, code)))
    latencies: list[float] = []

    async def scenario() -> None:
        await started(app)
        done = asyncio.Event()
        prober = asyncio.ensure_future(probe_health(app, done, latencies))
        body = b"[" + b"[1, 2]," * 999 + b"[1, 2]]"
        for _ in range(2):
            sent: list[dict[str, Any]] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any], sent: Any = sent) -> None:
                sent.append(message)

            # Not parsed here: the test's own json.loads of 10 MB would block the loop.
            scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
            await app(scope, receive, send)
            assert sent[0]["status"] == 200 and len(sent[1]["body"]) > 5_000_000
        done.set()
        await prober
        app.offload.shutdown()

    asyncio.run(scenario())
    rows = [np.random.default_rng(0).random((1000, 500))]
    held = blocking_time(lambda: encode_reply("predict", rows, None, app.meta))
    assert_health_kept_answering(latencies, at_least=10, blocking=held)


def test_ready_only_once_every_worker_has_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = Server(str(write_model(tmp_path, {}, "def f(x):\n    return x.sum(axis=1)\n")))
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("NBC_STATE_DIR", str(state))
    monkeypatch.setenv("NBC_WORKERS", "2")
    app.load()  # marks this worker's model as loaded
    assert (state / f"loaded-{os.getpid()}").exists()
    assert not app.ready() and app._ready()[0] == 503  # the other worker is still loading
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (state / f"loaded-{dead.pid}").touch()  # a worker that died: it serves nothing
    assert not app.ready()
    (state / f"loaded-{os.getppid()}").touch()  # a live one
    assert app.ready() and app._ready()[0] == 200


def test_a_client_that_never_reads_its_answer_is_cut_off(tmp_path: Path) -> None:
    """Slow readers: clients that send a request for a large answer and never read it. Each
    held its connection (and the ~10 MB answer) for as long as it liked, so as many of them as
    NBC_MAX_CONCURRENCY left every other client a 503, for ever. After NBC_WRITE_TIMEOUT
    without the client reading, its connection is dropped and the server serves again."""
    code = (
        "import numpy as np\ndef f(x):\n    return np.random.default_rng(0).random((len(x), 500))\n"
    )
    body = json.dumps([[1, 2]] * 1000).encode()
    post = (
        f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    env = {"NBC_WORKERS": "1", "NBC_MAX_CONCURRENCY": "3", "NBC_WRITE_TIMEOUT": "2"}
    with shipped_server(tmp_path, code, **env) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        readers = []
        try:
            for _ in range(4):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny window
                s.connect(("127.0.0.1", port))
                s.sendall(post)
                readers.append(s)
            time.sleep(1)
            statuses = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"{url}/v2/health/live", timeout=5) as reply:
                        statuses.append(reply.status)
                        break
                except urllib.error.HTTPError as exc:
                    statuses.append(exc.code)
                time.sleep(0.5)
            assert statuses[-1] == 200, statuses  # was 503 for as long as the readers stayed
            time.sleep(4)  # every answer has waited NBC_WRITE_TIMEOUT by now
            for s in readers:  # each lost its connection before its whole answer
                s.settimeout(5)
                got = 0
                with contextlib.suppress(ConnectionResetError):
                    while chunk := s.recv(1 << 16):
                        got += len(chunk)
                assert got < 5_000_000, got
        finally:
            for s in readers:
                s.close()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("inf", "must be a number above 0"),
        ("nan", "must be a number above 0"),
        ("0", "must be a number above 0"),
        ("-5", "must be a number above 0"),
        ("thirty", "is not a number"),
    ],
)
def test_a_limit_read_as_unlimited_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    """`inf` passed the old check (> 0) and meant no deadline; nan passed it too. The server
    stops at start with one line naming the variable, before it listens."""
    pytest.importorskip("uvicorn")
    from nbcontainers.serving.image import serve

    monkeypatch.setenv("NBC_WRITE_TIMEOUT", value)
    with pytest.raises(SystemExit, match=f"nbcontainers: NBC_WRITE_TIMEOUT='{value}' {says}"):
        serve.main()
    monkeypatch.setenv("NBC_WRITE_TIMEOUT", "5")
    monkeypatch.setenv("NBC_HEADER_TIMEOUT", value)
    with pytest.raises(SystemExit, match=f"NBC_HEADER_TIMEOUT='{value}' {says}"):
        serve.main()


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    )


def _hpack_literal(name: str, value: str) -> bytes:
    """One header as an HPACK literal without indexing, new name, no Huffman (RFC 7541 6.2.2);
    names and values here are under 127 bytes."""
    return b"\0" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


def _grpc_call_never_read(port: int, method: str, message: bytes) -> socket.socket:
    """An HTTP/2 connection that makes one gRPC call and gives the server no window to answer
    in (SETTINGS_INITIAL_WINDOW_SIZE 0): a client that never reads its answer."""
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(4, 0, 0, (4).to_bytes(2, "big") + bytes(4))
    )
    s.settimeout(5)
    s.recv(65536)  # the server's SETTINGS
    headers = b"".join(
        _hpack_literal(k, v)
        for k, v in [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", f"/inference.GRPCInferenceService/{method}"),
            (":authority", "x"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
    )
    s.sendall(
        _h2_frame(4, 1, 0, b"")  # SETTINGS ACK
        + _h2_frame(1, 4, 1, headers)  # HEADERS, END_HEADERS
        + _h2_frame(0, 1, 1, b"\0" + len(message).to_bytes(4, "big") + message)  # END_STREAM
    )
    return s


def _small_infer() -> bytes:
    """A serialized ModelInferRequest of one FP32 row [1, 2] for model "m"."""
    from nbcontainers.serving.image.grpc_service import message_classes

    request = message_classes()["ModelInferRequest"](model_name="m")
    request.inputs.add(name="input-0", datatype="FP32", shape=[1, 2]).contents.fp32_contents.extend(
        [1.0, 2.0]
    )
    return bytes(request.SerializeToString())


def test_grpc_calls_whose_answer_is_never_read_hold_no_slot(tmp_path: Path) -> None:
    """The gRPC side of the slow readers: calls whose client gives no window for the answer
    (the server sends its headers, then waits) as many as NBC_MAX_CONCURRENCY. grpc's server
    counts a call against the limit only while its handler runs, so other calls still get
    through: a guard (it held on the code before the REST fix too), for a move to another
    gRPC server."""
    grpc = pytest.importorskip("grpc")
    from nbcontainers.serving.image.grpc_service import message_classes

    types = message_classes()
    grpc_port = _free_port()
    env = {
        "NBC_WORKERS": "1",
        "NBC_MAX_CONCURRENCY": "2",
        "NBC_GRPC_PORT": str(grpc_port),
    }
    code = "def f(x):\n    return x.sum(axis=1)\n"
    with shipped_server(tmp_path, code, **env):
        held = [_grpc_call_never_read(grpc_port, "ModelInfer", _small_infer()) for _ in range(2)]
        try:
            time.sleep(1)
            for s in held:  # each call was taken: its answer's headers came, no data
                assert b"application/grpc" in s.recv(65536)
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                live = channel.unary_unary(
                    "/inference.GRPCInferenceService/ServerLive",
                    request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=types["ServerLiveResponse"].FromString,
                )
                codes = []
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    try:
                        assert live(types["ServerLiveRequest"](), timeout=5).live
                        codes.append("OK")
                        break
                    except grpc.RpcError as exc:
                        codes.append(exc.code().name)
                    time.sleep(0.5)
            assert codes == ["OK"], codes
        finally:
            for s in held:
                s.close()


def _frame_arrives(s: socket.socket, kind: int, stream: int, within: float) -> bool:
    """Whether an HTTP/2 frame of type ``kind`` on ``stream`` arrives on ``s`` within
    ``within`` seconds (the frames before it are skipped)."""
    data = b""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        while len(data) >= 9:
            size = int.from_bytes(data[:3], "big")
            if len(data) < 9 + size:
                break
            got = (data[3], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF)
            data = data[9 + size :]
            if got == (kind, stream):
                return True
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return False
        data += chunk
    return False


def test_a_grpc_answer_never_read_is_cancelled_after_the_write_timeout(tmp_path: Path) -> None:
    """Each gRPC call whose client never reads the answer keeps that answer in the server's
    memory for as long as the client likes (grpc's server has no write deadline), up to a
    message of NBC_GRPC_MAX_MESSAGE_BYTES per call, on as many connections as a client opens.
    After NBC_WRITE_TIMEOUT the call is cancelled (RST_STREAM) and its answer freed, as a REST
    connection is cut."""
    pytest.importorskip("grpc")
    grpc_port = _free_port()
    env = {"NBC_WORKERS": "1", "NBC_GRPC_PORT": str(grpc_port), "NBC_WRITE_TIMEOUT": "2"}
    with shipped_server(tmp_path, "def f(x):\n    return x.sum(axis=1)\n", **env):
        held = _grpc_call_never_read(grpc_port, "ModelInfer", _small_infer())
        try:
            # RST_STREAM (type 3) on the call's stream 1, within the timeout and some slack.
            assert _frame_arrives(held, 3, 1, within=10)
        finally:
            held.close()
