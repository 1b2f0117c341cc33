"""Property-based fuzzing of the REST API from the server's own OpenAPI document (issue 22),
with Schemathesis: every operation, with requests that follow the schema and requests that
break it. The properties: never a 5xx, a 4xx message that leaks nothing, and no answer slower
than its (small) size allows. In-process here, against the ASGI app; the real image's
/openapi.json is fuzzed the same way in test_fuzz_image.py."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from nbcontainers.serving.image import Server
from nbcontainers.serving.image.openapi import openapi
from tests.serving.test_attack_unit import call
from tests.serving.test_serving_unit import started, write_model

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.generation.modes import GenerationMode  # noqa: E402

LEAKS = re.compile(
    r"Traceback|Error:|Exception|/opt/|/usr/|site-packages|\.py\b|numpy|dtype\(", re.IGNORECASE
)
SIGNATURE = {
    "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
    "outputs": [{"name": "output-0", "datatype": "FP64", "shape": [-1]}],
}


def operations(document: dict[str, Any]) -> list[Any]:
    schema = schemathesis.openapi.from_dict(document)
    return [result.ok() for result in schema.get_all_operations()]


def body_of(case: Any) -> bytes:
    body = getattr(case, "body", None)
    if body is None or type(body).__name__ == "NotSet":
        return b""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@pytest.fixture(scope="module")
def app_on_a_loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any]]:
    folder = tmp_path_factory.mktemp("fuzz")
    app = Server(
        str(write_model(folder, {"signature": SIGNATURE}, "def f(x):\n    return x.sum(axis=1)\n"))
    )
    loop = asyncio.new_event_loop()
    loop.run_until_complete(started(app))
    yield app, loop
    loop.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_fuzzed_from_the_openapi_document(
    app_on_a_loop: tuple[Server, Any], mode: Any
) -> None:
    app, loop = app_on_a_loop
    seen: dict[int, int] = {}
    for operation in operations(openapi(app.name, app.meta)):

        @settings(
            max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            raw = body_of(case)
            begun = time.perf_counter()
            status, _, reply = loop.run_until_complete(
                call(app, case.method.upper(), case.formatted_path, raw)
            )
            assert time.perf_counter() - begun < 0.5, (case.formatted_path, len(raw))
            seen[status] = seen.get(status, 0) + 1
            assert status < 500, (status, reply, raw[:300])
            if status >= 400:
                assert not LEAKS.search(reply["error"]), reply

        try:
            run()
        except Unsatisfiable:
            # A GET with no parameters and no body: nothing in it can break the schema.
            assert mode == GenerationMode.NEGATIVE and operation.method.upper() == "GET"
    assert sum(seen.values()) > 100 and any(s >= 400 for s in seen), seen
