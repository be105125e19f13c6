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
import binascii
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.background import BackgroundTask

from ..runtime.audio import AUDIO_FORMATS, encode, wav_header
from ..runtime.errors import InputError, NumericsError, TangoError
from ..runtime.metadata import file_sha256, wav_info_chunk
from .batching import QueueFull, WorkerDead
from .guard import Gate
from .jobs import Cancelled, Expired, Job, Made
from .openapi import document
from .playground import add_page
from .schema import Body, PromptTooLong, form_value, parse
from .service import AudioTooLarge, Service
from .settings import Settings

log = logging.getLogger("tango_rt.serving")
POLL_S = 0.1  # how often a waiting request checks for its client's disconnect and its deadline
MULTIPART_FIELDS = 32  # form fields a multipart request may have (the request has 17)


class UnsupportedMedia(InputError):
    """A body in a media type the route does not read: 415."""


async def read_request(request: Request, settings: Settings) -> tuple[Body, bytes | None]:
    """The checked body and its audio file's bytes: a JSON body (audio as base64), or a multipart upload whose
    `audio` part is the file and whose `request` part (or its separate form fields) hold the rest."""
    kind = request.headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        fields, audio = await _read_form(request, settings.max_body_bytes)
    elif kind in ("application/json", ""):
        try:
            fields = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"the body is not JSON: {exc}") from None
        audio = None
    else:
        raise UnsupportedMedia(f"the body must be application/json or multipart/form-data, not {kind!r}")
    if not isinstance(fields, dict):
        raise InputError(f"the body must be a JSON object of request fields, got {type(fields).__name__}")
    body = parse(fields, settings)
    if body.audio is not None:
        if audio is not None:
            raise InputError("audio: give the file once (a multipart part or base64 in JSON)")
        try:
            audio = base64.b64decode(body.audio, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"audio: not base64 ({exc})") from None
    return body, audio


async def _read_form(request: Request, max_field_bytes: int) -> tuple[dict, bytes | None]:
    """The upload's fields (each at most the body cap; the file part's size is the gate's and load_audio's)."""
    try:
        form = await request.form(max_files=1, max_fields=MULTIPART_FIELDS, max_part_size=max_field_bytes)
    except Exception as exc:  # starlette's MultiPartException and parser errors: a malformed or oversized upload
        raise InputError(f"multipart: {getattr(exc, 'message', None) or exc}") from None
    fields: dict[str, Any] = {}
    audio = None
    for name, value in form.multi_items():
        if not isinstance(value, str):  # a file part (starlette's UploadFile)
            if name != "audio":
                raise InputError(f"multipart: the only file part is `audio`, got {name!r}")
            audio = await value.read()
        elif name == "request":
            try:
                fields.update(json.loads(value))
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                raise InputError(f"multipart: the `request` part is not a JSON object ({exc})") from None
        else:  # a form field per request field
            fields[name] = form_value(name, value)
    return fields, audio


def error(status: int, code: str, message: str, request_id: str = "", headers: dict | None = None) -> JSONResponse:
    headers = {**(headers or {}), **({"X-Request-Id": request_id} if request_id else {})}
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def handle_generate(service: Service, request: Request) -> Response:
    """POST /v1/audio/generate, shared by both front doors. A streamed answer stays in flight (the drain waits
    for it) until its last byte went out or its client left."""
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    service.in_flight += 1
    streaming = False
    try:
        response = await _generate(service, request, request_id)
        streaming = isinstance(response, StreamingResponse)
    finally:
        if not streaming:
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


GET_ROUTES = {"/health/live": handle_live, "/health/ready": handle_ready, "/metrics": handle_metrics,
              "/v1/models": handle_models}


def add_routes(app: FastAPI, service: Callable[[], Service], headers: Callable[[], dict] = dict) -> None:
    """Both front doors' routes, over the Service `service()` returns (this process's, or a Ray replica's), each
    answer tagged with `headers()`; the gate and the document that describes them."""
    app.add_middleware(Gate, limits=lambda: service().settings.gate())
    document(app, service)

    async def generate(request: Request) -> Response:
        response = await handle_generate(service(), request)
        response.headers.update(headers())
        return response

    app.add_api_route("/v1/audio/generate", generate, methods=["POST"], name="generate")
    for path, handler in GET_ROUTES.items():
        app.add_api_route(path, _answering(handler, service), methods=["GET"], name=handler.__name__)
    add_page(app, service)


def _answering(handler: Callable[[Service], Any], service: Callable[[], Service]) -> Callable:
    async def endpoint() -> Response:
        answer = handler(service())
        return answer if isinstance(answer, Response) else JSONResponse(answer)

    return endpoint


def create_app(service: Service) -> FastAPI:
    """The FastAPI front door: one process, one Service with its own batcher."""
    from tango_rt import __version__

    app = FastAPI(title="tango-rt", version=__version__, description="Text-to-audio with Tango models")
    app.state.service = service
    add_routes(app, lambda: service)
    return app


def _retry_after(service: Service) -> str:
    """Seconds until the queue has room: its depth in batches times the recent batch time."""
    batches = max(1, service.queue_depth()) / max(1, service.settings.max_batch)
    return str(max(1, math.ceil(batches * service.mean_batch_s)))


async def _generate(service: Service, request: Request, request_id: str) -> Response:
    arrived = time.monotonic()
    if (closed := _unavailable(service)) is not None:
        return closed
    try:
        body, audio_bytes = await read_request(request, service.settings)
    except UnsupportedMedia as exc:
        return error(415, "unsupported_media_type", str(exc))
    except PromptTooLong as exc:
        return error(413, "prompt_too_long", str(exc))
    except InputError as exc:
        return error(422, "invalid_request", str(exc))
    # several clips come as JSON (one audio body holds one clip); a stream comes as audio, whatever Accept says
    wants_json = not body.stream and ("application/json" in request.headers.get("accept", "")
                                      or body.options.get("samples", 1) != 1)
    segments: asyncio.Queue = asyncio.Queue()
    try:
        audio = await asyncio.to_thread(service.load_audio, audio_bytes) if audio_bytes is not None else None
        job = service.job(body, request_id, audio)
        job.input_sha256 = file_sha256(audio_bytes) if audio_bytes is not None else None
        if body.stream:
            job.sink = _sink(segments)
        waiting = service.submit(job)
        if body.stream:  # its end reaches the client through the sink; the future's outcome is read here
            waiting.add_done_callback(lambda future: future.cancelled() or future.exception())
    except AudioTooLarge as exc:
        return error(413, "audio_too_large", str(exc))
    except InputError as exc:
        return error(422, "invalid_request", str(exc))
    except QueueFull as exc:
        service.metrics.rejections.labels("queue_full").inc()
        return error(429, "overloaded", str(exc), headers={"Retry-After": _retry_after(service)})
    except WorkerDead as exc:
        return error(503, "worker_dead", str(exc))
    service.metrics.queue_depth.set(service.queue_depth())
    first = asyncio.ensure_future(segments.get()) if body.stream else waiting
    if (gave_up := await _wait(service, request, job, first)) is not None:
        return gave_up
    if body.stream:
        item = first.result()
        if isinstance(item, BaseException) or item is None:
            return _failed(service, item if item is not None else RuntimeError("the stream ended empty"), request_id)
        return _stream(service, body, job, item, segments)
    return _finish(service, body, job, waiting, arrived, wants_json, request_id)


def _unavailable(service: Service) -> Response | None:
    """503 while the worker is dead, the model loading or the server draining; else None."""
    if dead := _worker_dead(service):
        return dead
    if service.draining or not service.ready.is_set():
        service.metrics.rejections.labels("unavailable").inc()
        state = "draining" if service.draining else "loading"
        return error(503, state, f"the server is {state}", headers={"Retry-After": "5"})
    return None


def _finish(service: Service, body: Body, job: Job, waiting: asyncio.Future, arrived: float, wants_json: bool,
            request_id: str) -> Response:
    """A whole (not streamed) job's answer, once its future is done: the clips, or the failure's status."""
    if waiting.cancelled():  # the job's future was cancelled under it: nothing will answer
        return error(503, "cancelled", "the request was cancelled inside the server; retry")
    try:
        made = waiting.result()
    except Exception as exc:
        return _failed(service, exc, request_id)
    done = time.monotonic()
    timings = {"queue": 1000 * ((job.started or done) - arrived), "generate": 1000 * (done - (job.started or done)),
               "total": 1000 * (done - arrived)}
    service.metrics.latency.observe(done - arrived)
    return _answer(service, body, job, made, timings, wants_json, request_id)


async def _wait(service: Service, request: Request, job: Job, awaited: asyncio.Future) -> Response | None:
    """Wait for `awaited` (the job's result, or a stream's first segment) while watching the client and the
    deadline; the answer when either gave up first (the job's rows leave its batch at the next UNet step)."""
    while not awaited.done():
        await asyncio.wait({awaited}, timeout=POLL_S)
        if awaited.done():
            break
        if await _client_left(request):
            job.cancelled.set()
            service.metrics.rejections.labels("disconnected").inc()
            return Response(status_code=499)
        if job.expired():  # the job withdraws itself (Job.withdrawn) at the next UNet step
            service.metrics.rejections.labels("deadline").inc()
            return error(504, "deadline_exceeded", f"no result within {service.settings.timeout_s:g} s")
    return None


async def _client_left(request: Request) -> bool:
    """Whether the client disconnected. A front door whose receive channel fails cannot tell (Ray Serve raises an
    error of its proxy here, once, then reports no message): the request then waits for its result or its
    deadline, as if the client were still there, instead of failing with a 500."""
    try:
        return await request.is_disconnected()
    except Exception as exc:  # any error of the transport means "cannot tell"
        log.warning("cannot tell whether the client left: %s: %s", type(exc).__name__, exc)
        return False


def _failed(service: Service, exc: BaseException, request_id: str) -> Response:
    """The answer to a job that failed in the worker."""
    if isinstance(exc, Expired):
        service.metrics.rejections.labels("deadline").inc()
        return error(504, "deadline_exceeded", f"no result within {service.settings.timeout_s:g} s")
    if isinstance(exc, Cancelled):
        return Response(status_code=499)
    if isinstance(exc, WorkerDead):
        return error(503, "worker_dead", str(exc))
    if isinstance(exc, NumericsError):
        return error(502, "invalid_output", f"the model produced an invalid result for this request: {exc}")
    if isinstance(exc, InputError):
        return error(422, "invalid_request", str(exc))
    if isinstance(exc, TangoError):
        return error(503, "backend_error", str(exc))
    log.error("request %s failed", request_id, exc_info=exc)
    return error(500, "generation_failed", f"generation failed: {type(exc).__name__}: {str(exc)[:200]} (request id "
                 f"{request_id}; its traceback is in the server log)")


def _sink(segments: asyncio.Queue):
    """A job's segment sink for the worker thread: each item lands in the request's queue on its event loop."""
    loop = asyncio.get_running_loop()
    return lambda item: loop.call_soon_threadsafe(segments.put_nowait, item)


def _stream(service: Service, body: Body, job: Job, first, segments: asyncio.Queue) -> Response:
    """The clip as it is made: a WAV header with the exact final length (known up front), then 16-bit PCM chunks
    per window; or raw PCM. A failure part-way ends the response without its last chunk, so the client sees an
    incomplete transfer, never a shorter file that looks whole."""
    config = service.tango.pipeline.config

    done = threading.Event()

    def finished() -> None:
        """Once, whichever way the stream ends (completed, failed part-way, client gone, never started)."""
        if not done.is_set():
            done.set()
            job.cancelled.set()  # a client gone mid-stream: its row leaves the batch at the next UNet step
            service.in_flight -= 1

    wav = body.response_format == "wav"
    trailer = wav_info_chunk(service.settings_of(job, 0)) if wav else b""  # the settings, after the samples

    async def chunks() -> AsyncIterator[bytes]:
        try:
            if wav:
                yield wav_header(job.length, config.sample_rate, len(trailer))
            item = first
            while item is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item.astype("<i2").tobytes()
                item = await segments.get()
            yield trailer
        finally:
            finished()

    media = AUDIO_FORMATS[body.response_format][1]
    if body.response_format == "pcm":
        media += f";rate={config.sample_rate};channels=1"
    return StreamingResponse(chunks(), media_type=media, headers={"X-Seed": str(job.seed)},
                             background=BackgroundTask(finished))


def _answer(service: Service, body: Body, job: Job, made: Made, timings: dict, wants_json: bool,
            request_id: str) -> Response:
    """The clips, each file carrying its settings (runtime/metadata.py)."""
    rate = service.tango.sample_rate
    headers = {"X-Seed": str(job.seed), "Server-Timing": ", ".join(f"{k};dur={v:.1f}" for k, v in timings.items())}
    files = [encode(clip, rate, body.response_format, service.settings_of(job, row, gain))
             for row, (clip, gain) in enumerate(zip(made.clips, made.gains_db, strict=True))]
    if wants_json:
        encoded = [base64.b64encode(file).decode() for file in files]
        return JSONResponse({"audio": encoded[0], "clips": encoded, "sample_rate": rate,
                             "format": body.response_format, "seed": job.seed, "request_id": request_id,
                             "timings_ms": {k: round(v, 1) for k, v in timings.items()}}, headers=headers)
    media = AUDIO_FORMATS[body.response_format][1]
    if body.response_format == "pcm":
        media += f";rate={rate};channels=1"
    return Response(files[0], media_type=media, headers=headers)
