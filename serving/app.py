"""The HTTP API (FastAPI): POST /v1/audio/generate, health, metrics, models; JSON errors {"error": {code, message}}.

Statuses: 401 without the API key (when one is set; checked before the body is read, serving/guard.py), 413 for a
body or prompt past its cap, 422 for bad fields or a request past the server's caps, 429 when the queue is full
(with Retry-After), 499 when the client went away, 502 when the model produced NaN/Inf for this request, 503 while
loading or draining or once the worker died, 504 past the request's deadline, 500 only for a bug (its request id
is in the log).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from ..runtime.audio import AUDIO_FORMATS, encode
from ..runtime.errors import InputError, NumericsError, TangoError
from ..runtime.schedulers import DEFAULT_SCHEDULER, SCHEDULER_NAMES
from .batching import Cancelled, Expired, QueueFull, WorkerDead
from .guard import Gate
from .service import PromptTooLong, Service

log = logging.getLogger("tango_rt.serving")
POLL_S = 0.1  # how often a waiting request checks for its client's disconnect and its deadline


class GenerateRequest(BaseModel):
    """Defaults as Tango.generate: 100 DDPM steps, guidance 3, one 10.24 s clip, a fresh seed."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="what the clip should sound like")
    steps: int = Field(100, ge=1, le=1000)
    guidance: float = Field(3.0, ge=0, le=100, allow_inf_nan=False)
    seed: int | None = Field(None, ge=0, lt=2**63, description="fixed seed; omitted: one is drawn and returned")
    scheduler: Literal[SCHEDULER_NAMES] = DEFAULT_SCHEDULER  # type: ignore[valid-type]
    scheduler_options: dict[str, Any] | None = Field(None, description="diffusers scheduler options")
    samples: int = Field(1, ge=1, le=16, description="clips; more than one needs Accept: application/json")
    response_format: Literal["wav", "flac", "pcm"] = "wav"
    duration: float | None = Field(None, gt=0, le=600, allow_inf_nan=False, description="seconds (default 10.24)")


def error(status: int, code: str, message: str, request_id: str = "", headers: dict | None = None) -> JSONResponse:
    headers = {**(headers or {}), **({"X-Request-Id": request_id} if request_id else {})}
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def install_error_handler(app: FastAPI, metrics_of) -> None:
    """Validation errors as {"error": ...} with status 422, counted in the metrics of `metrics_of(request)`."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
        metrics = metrics_of(request)
        if metrics is not None:
            metrics.requests.labels("422").inc()
        return error(422, "invalid_request", problems)


async def handle_generate(service: Service, request: Request, body: GenerateRequest) -> Response:
    """POST /v1/audio/generate, shared by both front doors."""
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    service.in_flight += 1
    try:
        response = await _generate(service, request, body, request_id)
    finally:
        service.in_flight -= 1
    service.metrics.requests.labels(str(response.status_code)).inc()
    response.headers["X-Request-Id"] = request_id
    return response


def _worker_dead(service: Service) -> JSONResponse | None:
    """The 503 every endpoint but metrics answers once the worker thread died, else None."""
    if service.worker_failure:
        return error(503, "worker_dead", f"the worker thread died: {service.worker_failure}")
    return None


def handle_live(service: Service) -> Response:
    """Alive unless the worker thread died (a supervisor should restart the process; it also exits by itself)."""
    return _worker_dead(service) or JSONResponse({"status": "alive"})


def handle_ready(service: Service) -> Response:
    if dead := _worker_dead(service):
        return dead
    if service.load_error:
        return error(503, "load_failed", service.load_error)
    if service.draining:
        return error(503, "draining", "shutting down: finishing accepted requests")
    if not service.ready.is_set():
        return error(503, "loading", "the model is loading and warming up")
    return JSONResponse({"status": "ready"})


def handle_metrics(service: Service) -> Response:
    service.metrics.queue_depth.set(service.queue_depth())
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def handle_models(service: Service) -> dict:
    return {"object": "list", "data": [service.describe()]}


def create_app(service: Service) -> FastAPI:
    """The FastAPI front door: one process, one Service with its own batcher."""
    from tango_rt import __version__

    app = FastAPI(title="tango-rt", version=__version__, description="Text-to-audio with Tango models")
    app.state.service = service
    install_error_handler(app, lambda request: service.metrics)
    app.add_middleware(Gate, limits=lambda: (service.settings.api_key, service.settings.max_body_bytes))

    @app.post("/v1/audio/generate", responses={200: {"content": {m: {} for _, m in AUDIO_FORMATS.values()}}})
    async def generate(request: Request, body: GenerateRequest) -> Response:
        return await handle_generate(service, request, body)

    @app.get("/health/live")
    async def live() -> Response:
        return handle_live(service)

    @app.get("/health/ready")
    async def ready() -> Response:
        return handle_ready(service)

    @app.get("/metrics")
    async def metrics() -> Response:
        return handle_metrics(service)

    @app.get("/v1/models")
    async def models() -> dict:
        return handle_models(service)

    return app


def _retry_after(service: Service) -> str:
    """Seconds until the queue has room: its depth in batches times the recent batch time."""
    batches = max(1, service.queue_depth()) / max(1, service.settings.max_batch)
    return str(max(1, math.ceil(batches * service.mean_batch_s)))


async def _generate(service: Service, request: Request, body: GenerateRequest, request_id: str) -> Response:
    arrived = time.monotonic()
    if dead := _worker_dead(service):
        return dead
    if service.draining or not service.ready.is_set():
        service.metrics.rejections.labels("unavailable").inc()
        state = "draining" if service.draining else "loading"
        return error(503, state, f"the server is {state}", headers={"Retry-After": "5"})
    wants_json = "application/json" in request.headers.get("accept", "")
    if body.samples > 1 and not wants_json:
        return error(422, "invalid_request", "samples > 1 returns several clips: send Accept: application/json")
    try:
        job = service.job(body.prompt, body.steps, body.guidance, body.scheduler, body.samples, body.seed,
                          body.duration, body.scheduler_options, request_id)
        waiting = service.submit(job)
    except PromptTooLong as exc:
        return error(413, "prompt_too_long", str(exc))
    except InputError as exc:
        return error(422, "invalid_request", str(exc))
    except QueueFull as exc:
        service.metrics.rejections.labels("queue_full").inc()
        return error(429, "overloaded", str(exc), headers={"Retry-After": _retry_after(service)})
    except WorkerDead as exc:
        return error(503, "worker_dead", str(exc))
    service.metrics.queue_depth.set(service.queue_depth())
    while not waiting.done():
        await asyncio.wait({waiting}, timeout=POLL_S)
        if waiting.done():
            break
        if await request.is_disconnected():
            job.cancelled.set()
            service.metrics.rejections.labels("disconnected").inc()
            return Response(status_code=499)
        if job.expired():
            job.cancelled.set()
            service.metrics.rejections.labels("deadline").inc()
            return error(504, "deadline_exceeded", f"no result within {service.settings.timeout_s:g} s")
    if waiting.cancelled():  # the job's future was cancelled under it: nothing will answer
        return error(503, "cancelled", "the request was cancelled inside the server; retry")
    try:
        clips = waiting.result()
    except Expired:
        service.metrics.rejections.labels("deadline").inc()
        return error(504, "deadline_exceeded", f"no result within {service.settings.timeout_s:g} s")
    except Cancelled:
        return Response(status_code=499)
    except WorkerDead as exc:
        return error(503, "worker_dead", str(exc))
    except NumericsError as exc:
        return error(502, "invalid_output", f"the model produced an invalid result for this request: {exc}")
    except InputError as exc:
        return error(422, "invalid_request", str(exc))
    except TangoError as exc:
        return error(503, "backend_error", str(exc))
    except Exception:
        log.exception("request %s failed", request_id)
        return error(500, "internal_error", f"internal error; request id {request_id} is in the server log")
    done = time.monotonic()
    timings = {"queue": 1000 * ((job.started or done) - arrived), "generate": 1000 * (done - (job.started or done)),
               "total": 1000 * (done - arrived)}
    service.metrics.latency.observe(done - arrived)
    return _answer(service, body, job.seed, clips, timings, wants_json, request_id)


def _answer(service: Service, body: GenerateRequest, seed: int, clips: list, timings: dict, wants_json: bool,
            request_id: str) -> Response:
    rate = service.tango.sample_rate
    headers = {"X-Seed": str(seed), "Server-Timing": ", ".join(f"{k};dur={v:.1f}" for k, v in timings.items())}
    if wants_json:
        encoded = [base64.b64encode(encode(c, rate, body.response_format)).decode() for c in clips]
        return JSONResponse({"audio": encoded[0], "clips": encoded, "sample_rate": rate,
                             "format": body.response_format, "seed": seed, "request_id": request_id,
                             "timings_ms": {k: round(v, 1) for k, v in timings.items()}}, headers=headers)
    media = AUDIO_FORMATS[body.response_format][1]
    if body.response_format == "pcm":
        media += f";rate={rate};channels=1"
    return Response(encode(clips[0], rate, body.response_format), media_type=media, headers=headers)
