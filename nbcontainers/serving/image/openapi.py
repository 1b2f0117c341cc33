"""The server's OpenAPI document, made from the model's signature."""

from __future__ import annotations

import json
from typing import Any

from .protocol import MAX_DIMS

__all__ = [
    "model_metadata",
    "openapi",
]


def openapi(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI 3 document of a server for the model ``name`` described by ``meta``."""
    inputs = meta["signature"]["inputs"]
    # What the server takes, as exactly as the schema can say it (clients and fuzzers
    # generate from it): the model's input names and datatypes, concrete sizes.
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string", "enum": sorted({i["name"] for i in inputs})},
            "shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "maxItems": MAX_DIMS,
            },
            "datatype": {"type": "string", "enum": sorted({i["datatype"] for i in inputs})},
            "data": {"type": "array", "items": {}},
        },
    }
    error = {
        "description": "Bad input",
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
            }
        },
    }

    # Only the routes with a body can fail on the client's input.
    def op(summary: str, body: Any = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"summary": summary, "responses": {"200": {"description": "OK"}}}
        if body is not None:
            spec["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
            spec["responses"].update(
                {code: error for code in ("400", "408", "413", "415", "422", "503")}
            )
        return spec

    # The paths the server answers (app.Server._route), described for clients and tools.
    model = f"/v2/models/{name}"
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"{name} (nbcontainers serving)",
            "version": "1",
            "description": f"Inputs: {json.dumps(meta['signature']['inputs'])}",
        },
        "paths": {
            "/v2/health/live": {"get": op("Liveness")},
            "/v2/health/ready": {"get": op("Readiness: 503 until the model is loaded")},
            "/v2": {"get": op("Server metadata")},
            model: {"get": op("Model metadata: input and output signature")},
            f"{model}/ready": {"get": op("Model readiness")},
            f"{model}/infer": {
                "post": op(
                    "Open Inference Protocol v2 inference",
                    {
                        "type": "object",
                        "required": ["inputs"],
                        "properties": {
                            "id": {"type": "string"},
                            "inputs": {"type": "array", "items": tensor},
                        },
                    },
                )
            },
            "/predict": {
                "post": op(
                    'Plain JSON: {"instances": [row, ...]} -> {"predictions": [...]}',
                    {
                        "type": "object",
                        "properties": {"instances": {"type": "array", "items": {}}},
                    },
                )
            },
            "/metrics": {"get": op("Prometheus metrics")},
        },
    }


def model_metadata(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The Open Inference Protocol's model metadata, from the export's meta.json."""
    return {
        "name": name,
        "versions": ["1"],
        "platform": meta["format"],
        "inputs": meta["signature"]["inputs"],
        "outputs": meta["signature"]["outputs"],
        # Whether concurrent clients' rows share model calls, and why (set at export).
        "parameters": {
            "batchable": bool(meta.get("batchable")),
            "batching": str(meta.get("batching", "")),
        },
    }
