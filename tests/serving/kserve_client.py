"""Queries a serving image with the `kserve` package's clients, as their documentation shows;
prints what they got as JSON for tests/serving/test_clients_docker.py to check. Runs with
.venv-kserve/bin/python (scripts/ensure-kserve-client.sh), not the test venv:

    kserve_client.py HTTP_URL GRPC_HOST:PORT MODEL '[[5.1, 3.5, 1.4, 0.2], ...]'
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput


def request(model: str, x: np.ndarray, binary: bool, request_id: str) -> InferRequest:
    item = InferInput("input-0", list(x.shape), "FP64")
    item.set_data_from_numpy(x, binary_data=binary)
    wanted = [RequestedOutput("output-0", parameters={"binary_data": binary})]
    return InferRequest(model, [item], request_id=request_id, request_outputs=wanted)


async def main(url: str, grpc_target: str, model: str, x: np.ndarray) -> dict[str, Any]:
    got: dict[str, Any] = {}
    rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
    async with rest:
        got["rest_live"] = await rest.is_server_live(url)
        got["rest_ready"] = await rest.is_server_ready(url)
        got["rest_model_ready"] = await rest.is_model_ready(url, model)
        for binary in (False, True):
            rid = f"kserve-{'binary' if binary else 'json'}"
            headers: dict[str, str] = {}
            result = await rest.infer(
                url, request(model, x, binary, rid), model_name=model, response_headers=headers
            )
            out = result.outputs[0]
            got[rid] = {"id": result.id, "output": out.as_numpy().tolist(), "name": out.name}
            # The reply's encoding: binary outputs come after a JSON header of this length.
            got[rid]["binary_reply"] = "inference-header-content-length" in headers
    grpc = InferenceGRPCClient(grpc_target, timeout=30, retries=0)
    async with grpc:
        got["grpc_live"] = await grpc.is_server_live()
        got["grpc_ready"] = await grpc.is_server_ready()
        got["grpc_model_ready"] = await grpc.is_model_ready(model)
        result = await grpc.infer(request(model, x, True, "kserve-grpc"))
        out = result.outputs[0]
        got["kserve-grpc"] = {"id": result.id, "output": out.as_numpy().tolist(), "name": out.name}
    return got


if __name__ == "__main__":
    rows = np.asarray(json.loads(sys.argv[4]), dtype=np.float64)
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], rows))))
