"""/openapi.json as the server's truth: what each route reads and every answer it gives, with the live caps.

FastAPI writes the routes; this completes them with what the handlers do by hand (the generate route reads its
own body, JSON or multipart, and every route answers errors as {"error": {"code", "message"}}): the request schema
from serving/schema.py with the current settings' caps, the audio and JSON answers of a generation, each error
status with its meaning, Prometheus text for /metrics, and the API key as a security scheme when one is set.
The document is built per call of /openapi.json, so a server started with another --max-steps documents it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..runtime.audio import AUDIO_FORMATS
from .schema import UNSTATED_RULES, multipart_schema, request_schema

if TYPE_CHECKING:
    from .service import Service

GENERATE = "/v1/audio/generate"
REF = "#/components/schemas/"
ERROR = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {"type": "object", "required": ["code", "message"], "additionalProperties": False,
                             "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
}
CLIPS = {
    "type": "object", "required": ["audio", "clips", "sample_rate", "format", "seed", "request_id", "timings_ms"],
    "properties": {
        "audio": {"type": "string", "description": "the first clip, base64"},
        "clips": {"type": "array", "items": {"type": "string"}, "description": "every clip, base64"},
        "sample_rate": {"type": "integer"}, "format": {"enum": list(AUDIO_FORMATS)}, "seed": {"type": "integer"},
        "request_id": {"type": "string"},
        "timings_ms": {"type": "object", "additionalProperties": {"type": "number"}},
    },
}
STATUS = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
GENERATE_ERRORS = {
    "400": "a Content-Length that is not a number",
    "408": "the body stopped arriving (a chunk took longer than the body timeout)",
    "401": "missing or wrong API key (checked before the body is read)",
    "413": "a body, prompt or audio file past the server's cap",
    "415": "a body neither application/json nor multipart/form-data",
    "422": "a field outside its bounds, past the server's caps, or breaking a rule between fields; beyond what "
           "the request schema states: " + "; ".join(UNSTATED_RULES),
    "429": "the queue is full: retry after Retry-After seconds",
    "502": "the model produced NaN or Inf for this request",
    "503": "loading, draining, the worker died, or the backend failed",
    "504": "no result within the server's timeout",
}
KEYED_ERRORS = {"401": GENERATE_ERRORS["401"]}
HEALTH_ERRORS = {"503": "not alive or not ready (loading, draining, load failed, worker dead)"}


def _errors(descriptions: dict[str, str]) -> dict[str, Any]:
    return {code: {"description": text, "content": {"application/json": {"schema": {"$ref": REF + "Error"}}}}
            for code, text in descriptions.items()}


def _generate_operation(operation: dict, encoding: dict) -> None:
    audio = {media: {"schema": {"type": "string", "format": "binary"}} for _, media in AUDIO_FORMATS.values()}
    operation["requestBody"] = {"required": True, "content": {
        "application/json": {"schema": {"$ref": REF + "GenerateRequest"}},
        "multipart/form-data": {"schema": {"$ref": REF + "GenerateUpload"}, "encoding": encoding},
    }}
    seed = {"X-Seed": {"schema": {"type": "string"}, "description": "the seed that reproduces the clip"}}
    operation["responses"] = {
        "200": {"description": "the clip (audio); every clip as JSON with samples > 1 or Accept: application/json; "
                               "a stream is chunked WAV or PCM, cut off (no final chunk) if it fails part-way",
                "headers": seed, "content": {**audio, "application/json": {"schema": {"$ref": REF + "Clips"}}}},
        **_errors(GENERATE_ERRORS),
    }


def document(app: FastAPI, service: Callable[[], Service]) -> None:
    """Serve the completed document at /openapi.json, built from `service()`'s settings when it is asked for."""

    def openapi() -> dict:
        current = service().settings
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        body = request_schema(current, service().default_seconds())
        upload, encoding = multipart_schema(body)
        schema.setdefault("components", {})["schemas"] = {
            "GenerateRequest": body, "GenerateUpload": upload, "Error": ERROR, "Clips": CLIPS, "Status": STATUS}
        keyed = KEYED_ERRORS if current.api_key else {}
        for path, item in schema["paths"].items():
            for operation in item.values():
                if path == GENERATE:
                    _generate_operation(operation, encoding)
                elif path.startswith("/health/"):
                    operation["responses"] = {"200": {"description": "alive / ready", "content": {
                        "application/json": {"schema": {"$ref": REF + "Status"}}}}, **_errors(HEALTH_ERRORS)}
                elif path == "/metrics":
                    operation["responses"] = {"200": {"description": "Prometheus text exposition format",
                                                      "content": {"text/plain": {"schema": {"type": "string"}}}},
                                              **_errors(keyed)}
                else:
                    operation["responses"] = {"200": {"description": "the loaded model and the server's limits",
                                                      "content": {"application/json": {"schema": {"type": "object"}}}},
                                              **_errors(keyed)}
        if current.api_key:
            schema["components"]["securitySchemes"] = {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"apiKey": []}, {"bearer": []}]
            for path in schema["paths"]:
                if path.startswith("/health/"):
                    for operation in schema["paths"][path].values():
                        operation["security"] = []
        return schema

    app.openapi = openapi
