"""The HTTP API in this process: the app of one Service over the session's tiny model, through httpx's ASGI transport
(tests/serving_helpers.InProcess). Everything that needs no socket or signal: every field's 4xx, the gate, the
caps, the queue and deadlines, each worker failure point, NaN isolation, streams that fail part-way, the OpenAPI
document and fuzzing from it. tests/test_serving.py drives real processes for what needs them."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest

from conftest import INT16_LSB, WAV

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("torch")
soundfile = pytest.importorskip("soundfile")

from serving_helpers import AUTH, EDIT, FAST, GENERATE, KEY, InProcess, counter  # noqa: E402

GUARDED = dict(api_key=KEY, max_steps=50, max_duration_s=12, max_samples=2, max_body_bytes=4096, timeout_s=6,
               max_batch=4, max_wait_ms=300, max_prompt_chars=200, max_audio_bytes=200_000, max_audio_s=5)
SLOW = {"prompt": "a long rumble", "steps": 40, "scheduler": "ddim"}  # ~10 s of worker time on the tiny model


@pytest.fixture
def serve(tiny_tango):
    """serve(**settings) -> an InProcess app over the session's tiny model; stopped after the test."""
    made: list[InProcess] = []

    def make(**settings) -> InProcess:
        made.append(InProcess(tiny_tango, **settings))
        return made[-1]

    yield make
    for app in made:
        app.close()


def _b64(data: bytes | None = None) -> str:
    return base64.b64encode(WAV.read_bytes() if data is None else data).decode()


def _wav(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return soundfile.read(io.BytesIO(response.content), dtype="int16")[0].astype(np.int32)


def _big_wav(seconds: float) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    soundfile.write(buffer, rng.uniform(-0.5, 0.5, round(seconds * 16000)).astype(np.float32), 16000,
                    format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# ---- every field, refused with its JSON error before any work -------------------------------------------------------

BAD = [  # (body, status, words the message holds)
    ({"prompt": "x", "steps": 0}, 422, "steps"),
    ({"prompt": "x", "scheduler": "heun"}, 422, "scheduler"),
    ({"prompt": "x", "guidance": -1}, 422, "guidance"),
    ({"prompt": "x", "volume": 3}, 422, "volume"),
    ({"steps": 2}, 422, "prompt"),
    ({"prompt": "   "}, 422, "prompt must be a string with a character other than white space"),
    ({"prompt": "x", "scheduler": "dpm++", "scheduler_options": {"karras": True}}, 422, "karras"),
    ({"prompt": "x" * 201}, 413, "at most 200"),
    ({"prompt": "x", "cache_interval": 0}, 422, "cache_interval"),
    ({"prompt": "x", "cache_schedule": "random"}, 422, "cache_schedule"),
    ({"prompt": "x", "guidance_interval": [5, 1]}, 422, "0 <= low < high"),
    ({"prompt": "x", **FAST, "guidance_interval": [20, 30]}, 422, "holds none of this run's noise levels"),
    ({"prompt": "x", "seed": None}, 422, "seed: null is not a value"),
    ({"prompt": "x", "steps": 51, "scheduler": "ddim", "duration": 1.0}, 422, "max_steps 50"),
    ({"prompt": "x", "steps": 2, "scheduler": "ddim", "duration": 12.5}, 422, "max_duration_s 12"),
    ({"prompt": "x", **FAST, "samples": 3}, 422, "max_samples 2"),
    ({"prompt": "x", **FAST, "scheduler_options": {"num_train_timesteps": 1_000_000_000}}, 422, "num_train_timesteps"),
    ({"prompt": "x", **FAST, "scheduler_options": {"prediction_type": "epsilon"}}, 422, "prediction_type"),
    ({"prompt": "x", **FAST, "scheduler_options": {"trained_betas": [0.5] * 100}}, 422, "trained_betas"),
    ({"prompt": "x", **FAST, "scheduler": "unipc", "scheduler_options": {"sigma_min": "x"}}, 422, "sigma_min"),
    ({"prompt": "x", **FAST, "scheduler_options": ["use_karras_sigmas"]}, 422, "scheduler_options"),
    ({"prompt": "x", **EDIT, "audio": "not base64!"}, 422, "not base64"),
    ({"prompt": "x", **EDIT, "audio": _b64(b"RIFF junk")}, 422, "cannot read"),
    ({"prompt": "x", **EDIT, "audio": _b64(_big_wav(6.0))}, 422, "longer than the 5 s allowed"),  # 192 KB: fits
    ({"prompt": "x", **EDIT, "strength": 0.5}, 422, "strength need"),
    ({"prompt": "x", **EDIT, "audio": "WAV", "strength": 1.5}, 422, "strength"),
    ({"prompt": "x", **EDIT, "audio": "WAV", "inpaint": [[0.5, 3.0]]}, 422, "ends after the audio"),
    ({"prompt": "x", **EDIT, "audio": "WAV", "inpaint": [[0.5, 0.4]]}, 422, "empty"),
    ({"prompt": "x", **EDIT, "audio": "WAV", "inpaint": [[0, 0.1]] * 17}, 422, "inpaint"),
    ({"prompt": "x", "steps": 2, "audio": "WAV", "extend": 13}, 422, "max_duration_s 12"),
    ({"prompt": "x", **EDIT, "audio": "WAV", "extend": -1}, 422, "extend"),
    ({"prompt": "x", "steps": 2, "audio": "WAV", "loop": True}, 422, "takes no input audio"),
    ({"prompt": "x", **FAST, "stream": True, "samples": 2}, 422, "samples must be 1"),
    ({"prompt": "x", **FAST, "stream": True, "response_format": "flac"}, 422, "not 'flac'"),
    ({"prompt": "x", "steps": 2, "audio": "WAV", "strength": 0.5, "stream": True}, 422,
     "only long-form clips and extensions stream"),
    ({"prompt": "x", **FAST, "duration": 0.15, "loop": True}, 422, "shorter than two crossfades"),
]


def test_bad_requests_get_json_errors_before_any_work(serve):
    app = serve(**GUARDED)
    for body, status, words in BAD:
        body = {**body, "audio": _b64()} if body.get("audio") == "WAV" else body
        started = time.monotonic()
        response = app.post(body, headers=AUTH)
        assert response.status_code == status, (body, response.text)
        problem = response.json()["error"]
        assert set(problem) == {"code", "message"} and words in problem["message"], (words, problem)
        assert time.monotonic() - started < 2, body  # refused before any model work
    assert app.post({"prompt": "still fine", **FAST}, headers=AUTH).status_code == 200
    not_json = app.post(content=b"not json", headers={**AUTH, "content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["error"]["code"] == "invalid_request"


def test_uploads_over_the_byte_cap_other_media_and_two_files(serve):
    app = serve(**{**GUARDED, "max_body_bytes": 65536})  # room in the body for the file: the audio cap decides
    big = app.post(files={"audio": ("big.wav", _big_wav(7.0), "audio/wav")}, data={"prompt": "x"}, headers=AUTH)
    assert big.status_code == 413 and big.json()["error"]["code"] == "audio_too_large"
    text = app.post(content=b'{"prompt": "x"}', headers={**AUTH, "content-type": "text/plain"})
    assert text.status_code == 415
    two = app.post(files=[("audio", ("a.wav", b"x", "audio/wav")), ("other", ("b.wav", b"y", "audio/wav"))],
                   data={"prompt": "x"}, headers=AUTH)
    assert two.status_code == 422 and "multipart" in two.json()["error"]["message"]
    fields = app.post(files={"audio": ("take.wav", WAV.read_bytes(), "audio/wav")},
                      data={"prompt": "42", "steps": "2", "scheduler": "ddim", "strength": "0.5", "seed": "1"},
                      headers=AUTH)  # form fields: text for strings (a prompt "42" stays one), JSON for the rest
    assert fields.status_code == 200, fields.text


# ---- the gate --------------------------------------------------------------------------------------------------------

def test_the_key_is_checked_before_the_body_is_parsed(serve):
    app = serve(**GUARDED)
    bad_json = app.post(content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 401 and bad_json.json()["error"]["code"] == "unauthorized"
    assert app.post(content=b"x" * 100_000).status_code == 401  # a stranger's large body is not parsed
    assert app.post({"prompt": "x", **FAST}, headers={"Authorization": KEY}).status_code == 401  # no scheme
    assert app.post({"prompt": "x", **FAST}, headers={"Authorization": f"Basic {KEY}"}).status_code == 401
    assert app.post({"prompt": "x", **FAST}, headers={"X-API-Key": "wrong"}).status_code == 401
    assert app.post({"prompt": "x", **FAST}, headers={"X-API-Key": KEY}).status_code == 200
    for path in ("/v1/models", "/metrics", "/docs", "/openapi.json"):
        assert app.get(path).status_code == 401, path
        assert app.get(path, headers=AUTH).status_code == 200, path
    for path in ("/health/live", "/health/ready"):
        assert app.get(path).status_code == 200, path


def test_body_size_is_capped_before_parsing_and_a_stalled_body_times_out(serve):
    app = serve(**GUARDED, body_timeout_s=0.5)
    big = app.post(content=b"x" * 5000, headers=AUTH)
    assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"

    async def chunks():
        for _ in range(10):
            yield b" " * 1000  # no Content-Length: the running length is what counts

    assert app.post(content=chunks(), headers=AUTH).status_code == 413

    async def stalls():
        yield b'{"prompt": '
        await __import__("asyncio").sleep(2)
        yield b'"late"}'

    stalled = app.post(content=stalls(), headers={**AUTH, "content-type": "application/json"})
    assert stalled.status_code == 408 and stalled.json()["error"]["code"] == "body_timeout"
    assert app.post({"prompt": "still fine", **FAST}, headers=AUTH).status_code == 200


def test_models_shows_the_limits_and_metrics_the_process(serve):
    app = serve(**GUARDED, preset="fast")
    model = app.get("/v1/models", headers=AUTH).json()["data"][0]
    limits = model["limits"]
    assert limits["max_steps"] == 50 and limits["max_duration_s"] == 12 and limits["max_samples"] == 2
    assert limits["max_body_bytes"] == 4096 and limits["timeout_s"] == 6 and limits["max_audio_s"] == 5
    assert model["preset"] == "fast" and set(model["presets"]) == {"fast", "turbo"}
    assert model["defaults"]["steps"] == 15
    metrics = app.get("/metrics", headers=AUTH)
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "tango_build_info{", "python_info{"):
        assert name in metrics.text, name


def test_readiness_before_the_model_is_ready(serve):
    app = serve()
    app.service.ready.clear()
    early = app.get("/health/ready")
    assert early.status_code == 503 and early.json()["error"]["code"] == "loading"
    assert app.post({"prompt": "x", **FAST}).status_code == 503
    assert app.get("/health/live").status_code == 200


# ---- the queue, deadlines ------------------------------------------------------------------------------------------

def test_overload_gives_429_with_retry_after_and_deadline_504(serve):
    app = serve(max_batch=1, max_queue=1, max_wait_ms=0, timeout_s=3)
    body = {"prompt": "busy", "steps": 6, "scheduler": "ddim", "duration": 1.0}
    responses = app.together([body] * 6)
    codes = sorted(r.status_code for r in responses)
    assert codes.count(429) >= 1 and codes.count(200) >= 2 and set(codes) <= {200, 429}, codes
    rejected = next(r for r in responses if r.status_code == 429)
    assert int(rejected.headers["retry-after"]) >= 1 and rejected.json()["error"]["code"] == "overloaded"
    late = app.post({"prompt": "too slow", "steps": 40, "scheduler": "ddim"})  # ~10 s > the 3 s deadline
    assert late.status_code == 504 and late.json()["error"]["code"] == "deadline_exceeded"


def test_a_passed_deadline_stops_the_batch_at_the_next_step(serve):
    app = serve(**GUARDED)
    started = time.monotonic()
    late = app.post(SLOW, headers=AUTH)
    assert late.status_code == 504
    fast = app.post({"prompt": "next", **FAST}, headers=AUTH)  # the worker is free again within a step
    assert fast.status_code == 200 and time.monotonic() - started < 9  # the slow job alone would run ~10 s
    time.sleep(0.3)
    assert counter(app.get("/metrics", headers=AUTH).text, 'tango_jobs_withdrawn_total{reason="deadline"}') == 1


def test_a_client_that_left_before_its_deadline_counts_as_gone_not_late():
    """Why a job is withdrawn: its client leaving comes first (a queued job whose client left and whose deadline
    then passed is counted as disconnected: before, as late); a job whose client stayed is late past its deadline."""
    from tango_rt.runtime.request import GenerationRequest
    from tango_rt.serving.jobs import Cancelled, Expired, Job

    job = Job(GenerationRequest.build(["x"], seed=1), deadline=time.monotonic() + 60)
    assert job.withdrawn() is None
    job.deadline = time.monotonic() - 1
    assert isinstance(job.withdrawn(), Expired)
    job.cancelled.set()
    assert isinstance(job.withdrawn(), Cancelled)


# ---- every failure point of the worker -------------------------------------------------------------------------------

def _observer_fails(monkeypatch):
    from tango_rt.serving.service import Service

    monkeypatch.setattr(Service, "observe_batch", lambda self, *args: (_ for _ in ()).throw(RuntimeError("observer")))


def _runner_miscounts_once(monkeypatch):
    import tango_rt.serving.service as service

    real, calls = service.run_jobs, []
    monkeypatch.setattr(service, "run_jobs", lambda runner, jobs: [] if not calls.append(1) and len(calls) == 1
                        else real(runner, jobs))


def _future_cancelled_once(monkeypatch):
    from tango_rt.serving.batching import Batcher

    real, calls = Batcher._run, []

    def cancel_then_run(self, batch):
        calls.append(1)
        if len(calls) == 1:
            batch[0].future.cancel()  # as if its waiter gave up: set_result on it raises InvalidStateError
        real(self, batch)

    monkeypatch.setattr(Batcher, "_run", cancel_then_run)


@pytest.mark.parametrize(("inject", "first"), [(_observer_fails, 200), (_runner_miscounts_once, 500),
                                               (_future_cancelled_once, 503)],
                         ids=["observer-raises", "runner-miscounts", "future-cancelled"])
def test_the_worker_survives_each_failure_point(serve, monkeypatch, inject, first):
    inject(monkeypatch)
    app = serve(max_wait_ms=50)
    assert app.post({"prompt": "one", **FAST}).status_code == first
    assert app.post({"prompt": "two", **FAST}).status_code == 200
    assert app.get("/health/live").status_code == 200


def test_a_dead_worker_fails_health_and_ends_every_waiting_request(serve, monkeypatch):
    """The worker loop itself dies: health answers 503 worker_dead, every request it held is answered (a stream's
    too, at once, not at its deadline), the server is told to exit 70 (serving/server.py)."""
    from tango_rt.serving.batching import Batcher
    from tango_rt.serving.server import EXIT_WORKER_DEAD, DrainingServer

    real, calls = Batcher._take, []

    def take(self):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected: worker loop")
        return real(self)

    monkeypatch.setattr(Batcher, "_take", take)
    app = serve(timeout_s=30)
    fatal = []
    app.service.on_fatal = lambda: fatal.append(1)
    assert app.post({"prompt": "one", **FAST}).status_code == 200
    time.sleep(0.3)
    live, ready = app.get("/health/live"), app.get("/health/ready")
    assert live.status_code == 503 and live.json()["error"]["code"] == "worker_dead" and ready.status_code == 503
    refused = app.post({"prompt": "two", **FAST})
    assert refused.status_code == 503 and "injected: worker loop" in refused.json()["error"]["message"]
    assert fatal == [1]
    server = DrainingServer.__new__(DrainingServer)  # what on_fatal is in the server process
    server.service, server.should_exit = app.service, False
    monkeypatch.setattr("tango_rt.serving.server.FATAL_GRACE_S", 0.05)
    server.worker_died()
    time.sleep(0.3)
    assert server.exit_code == EXIT_WORKER_DEAD == 70 and server.should_exit and app.service.draining


def test_a_job_that_dies_with_the_worker_tells_its_stream_at_once(serve, monkeypatch):
    from tango_rt.serving.batching import Batcher

    monkeypatch.setattr(Batcher, "_run", lambda self, batch: (_ for _ in ()).throw(RuntimeError("injected: run")))
    app = serve(timeout_s=30, max_duration_s=30)
    started = time.monotonic()
    response = app.post({"prompt": "a rain bed", "steps": 2, "scheduler": "ddim", "duration": 12, "stream": True})
    assert response.status_code == 503 and response.json()["error"]["code"] == "worker_dead"
    assert time.monotonic() - started < 5  # not at the 30 s deadline


def _poison(monkeypatch):
    from faults import poisoned

    from tango_rt.runtime.pipeline import TangoPipeline

    monkeypatch.setattr(TangoPipeline, "encode_text", poisoned(TangoPipeline.encode_text))


def test_nan_in_a_batch_fails_only_its_own_request(serve, monkeypatch):
    _poison(monkeypatch)
    app = serve(max_batch=2, max_wait_ms=300)
    bodies = [{"prompt": "poison", **FAST, "seed": 1}, {"prompt": "healthy", **FAST, "seed": 2}]
    results = app.together(bodies)
    assert results[0].status_code == 502 and results[0].json()["error"]["code"] == "invalid_output"
    metrics = app.get("/metrics").text
    assert counter(metrics, "tango_batch_size_count") > counter(metrics, 'tango_batch_size_bucket{le="1.0"}')
    assert np.abs(_wav(results[1]) - _wav(app.post(bodies[1]))).max() <= INT16_LSB


# ---- streams that fail part-way -------------------------------------------------------------------------------------

def _unet_fails_at(monkeypatch, call: int):
    """The `call`-th UNet call from now raises a plain RuntimeError, as an ONNX Runtime, OpenVINO or CUDA error
    would reach the loop."""
    from tango_rt.runtime.pipeline import TangoPipeline

    real, calls = TangoPipeline._model_output, []

    def output(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise RuntimeError(f"injected: UNet call {call} failed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TangoPipeline, "_model_output", output)


STREAM = {"prompt": "a rain bed", "steps": 2, "scheduler": "ddim", "seed": 1, "duration": 12, "stream": True}


def test_a_stream_that_fails_before_its_first_window_gets_the_error_at_once(serve, monkeypatch):
    """Before the fix the client waited for its deadline and got a 504: now a 5xx naming the failure and the
    request id, at once; the server is ready and serves the next request."""
    _unet_fails_at(monkeypatch, 1)
    app = serve(timeout_s=30, max_duration_s=30)
    started = time.monotonic()
    response = app.post(STREAM, headers={"X-Request-Id": "req-17"})
    assert response.status_code == 500 and time.monotonic() - started < 5
    problem = response.json()["error"]
    assert problem["code"] == "generation_failed" and "injected: UNet call 1" in problem["message"]
    assert "req-17" in problem["message"] and response.headers["x-request-id"] == "req-17"
    assert app.service.in_flight == 0 and app.get("/health/ready").status_code == 200
    assert app.post({"prompt": "next", **FAST}).status_code == 200


def test_a_stream_that_fails_after_its_first_window_is_cut_off_at_once(serve, monkeypatch):
    """The first window (2 UNet calls) is sent; the third call fails: the transfer ends at once without its last
    chunk (the ASGI transport raises the app's error), nothing waits, and the server goes on."""
    _unet_fails_at(monkeypatch, 3)
    app = serve(timeout_s=30, max_duration_s=30)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="injected: UNet call 3"):
        app.post(STREAM)
    assert time.monotonic() - started < 10 and app.service.in_flight == 0
    # the worker marks itself idle when its batch function returns, a moment after the client saw the end
    while not app.service.idle() and time.monotonic() - started < 10:
        time.sleep(0.01)
    assert app.service.idle()
    assert app.post({"prompt": "next", **FAST}).status_code == 200


def test_a_job_is_judged_by_what_was_made_not_by_the_clock_after(tiny_tango):
    """A stream whose last window was sent, and a long clip made whole, both after their deadline passed during the
    last decode, are complete: their results, not Expired (before: a 504 thrown after the work was done)."""
    from tango_rt.runtime.request import GenerationRequest
    from tango_rt.runtime.runner import LONG, Prepared
    from tango_rt.serving.jobs import Job, run_jobs

    class SlowLastWindow:
        def prepare(self, request, inputs=None, stream=False):
            return Prepared(request, LONG, 32000)

        def segments(self, prepared, streams, wanted):
            yield {0: np.zeros(16000, np.int16)}
            time.sleep(0.3)  # the deadline passes during the last window's decode
            yield {0: np.ones(16000, np.int16)}

    request = GenerationRequest.build(["rain"], seed=1, duration=2.0)
    sent: list = []
    for job in (Job(request, 0.0, stream=True, sink=sent.append), Job(request, 0.0)):
        job.deadline = time.monotonic() + 0.1  # passes during the last window
        [result] = run_jobs(SlowLastWindow(), [job])
        job.finish(result)
        assert not isinstance(result, BaseException), result
        whole = job
    assert [len(s) for s in sent[:2]] == [16000, 16000] and sent[2] is None  # both windows, then the end
    assert len(whole.future.result().clips[0]) == 32000


# ---- the OpenAPI document, and fuzzing from it ----------------------------------------------------------------------

def test_the_document_says_what_the_server_does(serve):
    app = serve(**GUARDED)
    spec = app.get("/openapi.json", headers=AUTH).json()
    request = spec["components"]["schemas"]["GenerateRequest"]
    fields = request["properties"]
    assert fields["steps"]["maximum"] == 50 and fields["duration"]["maximum"] == 12
    assert fields["samples"]["maximum"] == 2 and fields["prompt"]["maxLength"] == 200
    assert fields["prompt"]["minLength"] == 1 and fields["prompt"]["pattern"] == r"\S"
    assert request["additionalProperties"] is False and "prompt" in request["required"]
    assert set(fields["scheduler_options"]["properties"]) >= {"use_karras_sigmas", "sigma_min"}
    assert fields["preset"]["enum"] == ["fast", "turbo"]
    operation = spec["paths"][GENERATE]["post"]
    for status in ("401", "413", "415", "422", "429", "502", "503", "504"):
        assert operation["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert "multipart/form-data" in operation["requestBody"]["content"]
    assert list(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert "apiKey" in spec["components"]["securitySchemes"]
    other = serve(max_steps=7, max_duration_s=1.5).get("/openapi.json").json()
    steps = other["components"]["schemas"]["GenerateRequest"]["properties"]["steps"]
    assert steps["maximum"] == 7 and "steps" in other["components"]["schemas"]["GenerateRequest"]["required"]


SCHEMATHESIS_EXAMPLES = 40  # per operation; 300 passed too (80 s), the suite keeps its time
FUZZ = dict(api_key=KEY, max_steps=3, max_duration_s=1.5, max_samples=2, timeout_s=10, max_queue=4,
            max_body_bytes=8192, max_audio_bytes=0)


def test_schemathesis_all_checks_against_the_document(serve):
    """Schemathesis (schema-driven fuzzing from /openapi.json), every check: no 5xx, every answer as documented
    (status, media type, body schema), schema-invalid requests refused, schema-valid ones accepted unless they
    break a rule the document lists as beyond JSON Schema (schema.UNSTATED_RULES: the 422 message must name it)."""
    schemathesis = pytest.importorskip("schemathesis")
    hypothesis = pytest.importorskip("hypothesis")
    from schemathesis.core.failures import FailureGroup

    from tango_rt.serving.schema import UNSTATED_RULES

    phrases = [p for words in UNSTATED_RULES.values() for p in ((words,) if isinstance(words, str) else words)]
    app = serve(**FUZZ)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app.app, headers={"X-API-Key": KEY})
    statuses: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.settings(max_examples=SCHEMATHESIS_EXAMPLES if operation.method == "post" else 8, deadline=None,
                             derandomize=True, database=None, suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(case=operation.as_strategy())
        def run(case):
            response = case.call(headers={"X-API-Key": KEY})
            statuses.append(response.status_code)
            try:
                case.validate_response(response)
            except FailureGroup as group:
                unstated = response.status_code == 422 and any(p in response.text for p in phrases)
                if any(f.code != "ST202" or not unstated for f in group.exceptions):
                    raise

        run()
    assert app.get("/health/live").status_code == 200 and app.get("/health/ready").status_code == 200
    assert 200 in statuses, statuses  # deep paths were reached, not only refusals


def test_arbitrary_json_and_headers_never_get_a_5xx(serve):
    """Arbitrary JSON (NaN and Infinity included), odd content types and Authorization headers: never a 5xx, always
    the JSON error shape or audio, and the server alive and ready afterwards."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    import json

    app = serve(**{**FUZZ, "api_key": None})
    anything = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                         max_size=4), max_leaves=12)

    @hypothesis.settings(max_examples=60, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(body=anything | st.fixed_dictionaries({"prompt": st.text(max_size=50)}, optional={
        "steps": anything, "scheduler_options": anything, "duration": anything, "samples": anything,
        "seed": anything}),
        content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
        authorization=st.sampled_from(["", "Bearer", "Bearer x", "Basic abc"]))
    def run(body, content_type, authorization):
        headers = {"content-type": content_type, **({"authorization": authorization} if authorization else {})}
        response = app.post(content=json.dumps(body, allow_nan=True).encode(), headers=headers)
        assert response.status_code < 500, (response.status_code, response.text[:300])
        if response.status_code >= 400:
            assert set(response.json()["error"]) == {"code", "message"}
        else:
            assert response.headers["content-type"].startswith(("audio/", "application/json"))

    run()
    assert app.get("/health/live").status_code == 200 and app.get("/health/ready").status_code == 200


def test_every_answer_carries_its_settings_and_loudness_reaches_the_clip(serve):
    """WAV and FLAC answers carry the clip's settings (runtime/metadata.py): prompt, seed, row, options, the model;
    a loudness target's gain is recorded; a server preset fills what the body leaves out."""
    from tango_rt.runtime.metadata import read_settings

    app = serve(preset="fast", max_samples=2)
    wav = app.post({"prompt": "a bell", "duration": 1.0, "seed": 5, "loudness": -20.0})
    settings = read_settings(io.BytesIO(wav.content))
    assert settings["prompt"] == "a bell" and settings["seed"] == 5 and settings["row"] == 0
    assert settings["options"]["steps"] == 15 and settings["options"]["scheduler"] == "unipc"  # the server's preset
    assert settings["options"]["preset"] == "fast" and settings["options"]["loudness"] == -20.0
    assert isinstance(settings["loudness_gain_db"], float) and settings["model"]["backends"]["unet"] == "torch"
    answer = app.post({"prompt": "rain", "duration": 1.0, "seed": 6, "samples": 2, "response_format": "flac",
                       "steps": 2})
    second = read_settings(io.BytesIO(base64.b64decode(answer.json()["clips"][1])))
    assert second["row"] == 1 and second["seed"] == 6 and second["options"]["steps"] == 2
