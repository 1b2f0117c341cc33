"""The fuzzers against the real exported iris image (issue 22), each bounded in examples:
Schemathesis from the image's own /openapi.json (requests that follow the schema and requests
that break it), the structure-aware binary-extension bodies of test_fuzz_binary.py over HTTP,
and the ModelInferRequest messages of test_fuzz_grpc.py over gRPC. Zero 5xx, no message that
leaks internals, no answer slower than its size allows, and the server still answers after."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.serving.test_attack_image import GOOD, LEAKS, post
from tests.serving.test_fuzz_binary import binary_request

pytestmark = pytest.mark.docker
schemathesis = pytest.importorskip("schemathesis")
from schemathesis.generation.modes import GenerationMode  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(iris_default: Any) -> Any:
    return iris_default  # the image's defaults: every core, every limit at its default


def still_serving(url: str) -> None:
    status, text, _ = post(f"{url}/v2/models/iris/infer", json.dumps({"inputs": [GOOD]}).encode())
    assert status == 200 and json.loads(text)["outputs"][0]["data"] == [0], (status, text)


def test_schemathesis_from_the_image_openapi(served: Any) -> None:
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    seen: dict[int, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=40,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                begun = time.perf_counter()
                response = case.call(base_url=served.url, timeout=30)
                assert time.perf_counter() - begun < 1.0, case.formatted_path
                seen[response.status_code] = seen.get(response.status_code, 0) + 1
                assert response.status_code < 500, (response.status_code, response.text[:300])
                if response.status_code >= 400:
                    assert not LEAKS.search(response.json()["error"]), response.text

            try:
                run()
            except Unsatisfiable:  # a GET without parameters has no schema to break
                assert mode == GenerationMode.NEGATIVE
    assert sum(seen.values()) > 150, seen
    still_serving(served.url)


def test_binary_extension_bodies_over_http(served: Any) -> None:
    url = f"{served.url}/v2/models/iris/infer"
    statuses: dict[int, int] = {}

    @settings(
        max_examples=250, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(request=binary_request("FP64"))
    def run(request: tuple[bytes, Any]) -> None:
        raw, length = request
        status, text, seconds = post(url, raw, {"Inference-Header-Content-Length": str(length)})
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500 and seconds < 1.0, (status, seconds, raw[:300])
        if status >= 400:
            assert not LEAKS.search(json.loads(text)["error"]), text

    run()
    assert statuses.get(200, 0) > 0 and len(statuses) > 2, statuses  # deep and wide
    still_serving(served.url)


GRPC_FUZZ = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
import grpc
from hypothesis import HealthCheck, given, settings
from tests.serving.test_fuzz_grpc import infer_request
call = grpc.insecure_channel(sys.argv[1]).unary_unary(
    "/inference.GRPCInferenceService/ModelInfer"
)
out = []
@settings(max_examples=int(sys.argv[3]), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(raw=infer_request())
def run(raw):
    begun = time.perf_counter()
    try:
        call(raw, timeout=30)
        out.append(["OK", "", time.perf_counter() - begun])
    except grpc.RpcError as exc:
        out.append([exc.code().name, exc.details(), time.perf_counter() - begun])
run()
print(json.dumps(out))
"""


def test_grpc_messages_fuzzed(served: Any) -> None:
    # A child process: grpc's threads in this one upset CPython 3.11's ast (test_protocol.py).
    done = subprocess.run(
        [sys.executable, "-c", GRPC_FUZZ, served.grpc, str(ROOT), "250"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout)
    codes = {code for code, _, _ in answers}
    assert codes <= {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED"}, codes
    assert "OK" in codes and "INVALID_ARGUMENT" in codes, codes
    for code, details, seconds in answers:
        assert seconds < 1.0 and not LEAKS.search(details), (code, details, seconds)
    with urllib.request.urlopen(f"{served.url}/v2/health/ready", timeout=10) as reply:
        assert reply.status == 200
