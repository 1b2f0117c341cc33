"""The served protocol in-process: strict, bounded request checking (every malformed body a
4xx with a message, never a 500, the server serving on), and the binary tensor data
extension both ways, encoded and decoded by tritonclient's own code."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from nbcontainers.serving.image import MAX_DEPTH, BadRequest, Server, check_json
from nbcontainers.serving.smoke import free_port

from .test_serving_unit import started, write_model

ECHO = "import numpy as np\ndef f(x):\n    return np.asarray(x, dtype='float32').sum(axis=1)\n"

WORDS = (
    "import numpy as np\ndef f(x):\n"
    "    return np.asarray([str(v).upper() for v in x.reshape(-1)], dtype=object)\n"
)


async def call(
    app: Server, path: str, raw: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    await app(scope, receive, send)
    got = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], got, sent[1]["body"]


def tensor(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "input-0",
        "shape": [2, 2],
        "datatype": "FP32",
        "data": [1, 2, 3, 4],
    } | overrides


@pytest.fixture
def app(tmp_path: Path) -> Server:
    server = Server(str(write_model(tmp_path, {"batchable": True}, ECHO)), max_elements=1000)
    asyncio.run(started(server))
    return server


def test_malformed_requests_are_4xx_with_a_message_and_the_server_keeps_serving(
    app: Server,
) -> None:
    infer = "/v2/models/m/infer"
    deep = b"[" * 10_000 + b"]" * 10_000
    deep_data = json.dumps({"inputs": [tensor(data=json.loads("[" * 40 + "1" + "]" * 40))]})
    cases: list[tuple[bytes, dict[str, str], int, str]] = [
        (b"{not json", {}, 400, "not JSON"),
        (b"\xf6\x00", {}, 400, "not JSON"),
        (deep, {}, 400, "nests 10000 deep"),
        (deep_data.encode(), {}, 400, f"at most {MAX_DEPTH} levels"),
        (json.dumps({"inputs": [tensor(data=[0] * 1500)]}).encode(), {}, 413, "at most 1000"),
        (json.dumps({"inputs": [tensor(name="x")]}).encode(), {}, 400, "'input-0' (FP32"),
        (json.dumps({"inputs": [tensor(shape=[-1, 2])]}).encode(), {}, 400, "concrete"),
        (json.dumps({"inputs": [tensor(shape=[2, True])]}).encode(), {}, 400, "concrete"),
        (json.dumps({"inputs": [tensor(shape=[1, 4])]}).encode(), {}, 422, "[-1, 2]"),
        (json.dumps({"inputs": [tensor(shape=[3, 2])]}).encode(), {}, 400, "don't fit"),
        (json.dumps({"inputs": [tensor(shape=[1, 10**9])]}).encode(), {}, 413, "1000000000"),
        (json.dumps({"inputs": [tensor(datatype="INT8")]}).encode(), {}, 400, "FP32 in this"),
        (json.dumps({"inputs": [tensor(data=[[1, 2], [3]])]}).encode(), {}, 400, "FP32"),
        (json.dumps({"inputs": [tensor(data=[{"a": 1}] * 4)]}).encode(), {}, 400, "FP32"),
        # Finite in JSON, out of FP32's range: numpy would make it inf with a warning.
        (json.dumps({"inputs": [tensor(data=[1, 2, 3, 1e300])]}).encode(), {}, 400, "range"),
        (json.dumps({"inputs": [tensor(data=[1, 2, 3, -1e39])]}).encode(), {}, 400, "range"),
        (json.dumps({"inputs": [tensor(), tensor()]}).encode(), {}, 400, "twice"),
        (json.dumps({"inputs": [tensor(data=None)]}).encode(), {}, 400, "a list"),
        (json.dumps({"inputs": [{"name": "input-0"}]}).encode(), {}, 400, "concrete"),
        (json.dumps({"inputs": "x"}).encode(), {}, 400, '{"inputs"'),
        (json.dumps({"inputs": [tensor()], "outputs": [{"name": "y"}]}).encode(), {}, 400, "gives"),
        (json.dumps({"inputs": [tensor(parameters=[])]}).encode(), {}, 400, "parameters"),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "x"}, 400, "number of bytes"),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "99"}, 400, "the body 14"),
        (b"{}", {"Content-Encoding": "gzip"}, 415, "uncompressed"),
    ]
    binary = json.dumps({"inputs": [tensor(data=None, parameters={"binary_data_size": 15})]})
    raw = binary.encode() + bytes(16)
    cases += [
        (raw, {"Inference-Header-Content-Length": str(len(binary))}, 400, "take 16"),
        (raw, {"Inference-Header-Content-Length": str(len(binary) + 4)}, 400, "not JSON"),
    ]

    async def scenario() -> None:
        for body, headers, status, text in cases:
            got, _, reply = await call(app, infer, body, headers)
            message = json.loads(reply)["error"]
            assert got == status and text in message, (text, got, message)
        for body, status, text in (
            (deep, 400, "deep"),
            (b"[[1, 2]]" + b" " * 10, 200, ""),
            (json.dumps({"instances": [[1, 2]], "x": [0] * 2000}).encode(), 413, "at most"),
        ):
            got, _, reply = await call(app, "/predict", body)
            assert got == status and text in reply.decode(), reply
        got, _, reply = await call(app, infer, json.dumps({"inputs": [tensor()]}).encode())
        assert got == 200 and json.loads(reply)["outputs"][0]["data"] == [3.0, 7.0]

    asyncio.run(scenario())


def test_binary_inputs_and_outputs_as_tritonclient_encodes_them(app: Server) -> None:
    x = np.array([[1, 2], [3, 4.5]], dtype=np.float32)

    def request(binary_in: bool, outputs: list[Any] | None) -> tuple[bytes, dict[str, str]]:
        item = triton.InferInput("input-0", list(x.shape), "FP32")
        item.set_data_from_numpy(x, binary_data=binary_in)
        body, size = triton.InferenceServerClient.generate_request_body([item], outputs=outputs)
        return body, ({} if size is None else {"Inference-Header-Content-Length": str(size)})

    async def scenario() -> None:
        for binary_in in (True, False):
            # No outputs named: tritonclient asks for all of them in binary.
            for outputs, binary_out in (
                (None, True),
                ([triton.InferRequestedOutput("output-0", binary_data=False)], False),
                ([triton.InferRequestedOutput("output-0", binary_data=True)], True),
            ):
                body, headers = request(binary_in, outputs)
                status, got, reply = await call(app, "/v2/models/m/infer", body, headers)
                assert status == 200, reply
                length = got.get("inference-header-content-length")
                assert (length is not None) == binary_out
                result = triton.InferResult.from_response_body(
                    reply, header_length=None if length is None else int(length)
                )
                np.testing.assert_array_equal(result.as_numpy("output-0"), x.sum(axis=1))

    asyncio.run(scenario())


def test_bytes_tensors_in_both_encodings(tmp_path: Path) -> None:
    meta = {
        "signature": {
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "upper", "datatype": "BYTES", "shape": [-1]}],
        }
    }
    app = Server(str(write_model(tmp_path, meta, WORDS)))
    words = np.array(["ab", "ü", ""], dtype=object)

    async def scenario() -> None:
        await started(app)
        for binary in (True, False):
            item = triton.InferInput("text", [3], "BYTES")
            item.set_data_from_numpy(words, binary_data=binary)
            out = [triton.InferRequestedOutput("upper", binary_data=binary)]
            body, size = triton.InferenceServerClient.generate_request_body([item], outputs=out)
            headers = {} if size is None else {"Inference-Header-Content-Length": str(size)}
            status, got, reply = await call(app, "/v2/models/m/infer", body, headers)
            assert status == 200, reply
            length = got.get("inference-header-content-length")
            result = triton.InferResult.from_response_body(
                reply, header_length=None if length is None else int(length)
            )
            values = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("upper")]
            assert values == ["AB", "Ü", ""]

    asyncio.run(scenario())


def test_the_scan_counts_structure_not_strings() -> None:
    check_json(json.dumps([0.5] * 500_000).encode(), 1 << 21)
    with pytest.raises(BadRequest, match="about 500000 values"):
        check_json(json.dumps([0.5] * 500_000).encode(), 1000)
    check_json(b'["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "\\"]]]"]', 10)  # brackets in strings


def test_grpc_serves_the_same_model_through_the_same_checks(tmp_path: Path) -> None:
    # In a child: CPython 3.11's ast module counts recursion per interpreter, and after
    # grpc's threads have run, a later ast.parse in this process (test_architecture's)
    # can fail with "AST constructor recursion depth mismatch".
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from {__name__} import grpc_scenario; grpc_scenario({str(tmp_path)!r})",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("grpc ok"), done.stdout


def grpc_scenario(folder: str) -> None:
    tmp_path = Path(folder)
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    port = free_port()
    app = Server(str(write_model(tmp_path, {"batchable": True}, ECHO)), grpc_port=port)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(started(app), loop).result(10)
    x = np.array([[1, 2], [3, 4.5]], dtype=np.float32)
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_live() and client.is_model_ready("m")
        meta = client.get_model_metadata("m", as_json=True)
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": ["-1", "2"]}]
        item = grpcclient.InferInput("input-0", [2, 2], "FP32")
        item.set_data_from_numpy(x)
        result = client.infer("m", [item], request_id="g1")
        np.testing.assert_array_equal(result.as_numpy("output-0"), x.sum(axis=1))
        assert result.get_response().id == "g1"
        for name, shape, text in (
            ("x", [2, 2], "it takes 'input-0' (FP32"),
            ("input-0", [1, 4], "[-1, 2]"),
        ):
            bad = grpcclient.InferInput(name, shape, "FP32")
            bad.set_data_from_numpy(x.reshape(shape))
            with pytest.raises(InferenceServerException, match=re.escape(text)):
                client.infer("m", [bad])
        with pytest.raises(InferenceServerException, match="this server has 'm'"):
            client.infer("other", [item])
        np.testing.assert_array_equal(client.infer("m", [item]).as_numpy("output-0"), [3, 7.5])
        print("grpc ok")
    finally:
        app.grpc_server.stop(0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
