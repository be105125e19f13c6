"""What one stranger's request can do to `tango-rt serve`, tested against real server processes on loopback.

Caps, the key before any parsing, the body limit, per-call sampler options, withdrawal between UNet steps,
a worker that survives (or reports) every failure point, NaN isolation, drain and forced exit. Faults are injected
with a Python prelude run inside the server process. On the tiny model a 10.24 s clip costs ~0.25 s per step, so
40 steps hold the worker for ~10 s: long enough to tell "stopped at the next step" from "ran to the end"."""

from __future__ import annotations

import io
import signal
import threading
import time

import numpy as np
import pytest

from conftest import INT16_LSB

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("torch")
soundfile = pytest.importorskip("soundfile")

from serving_helpers import FAST, ServerProcess, post, post_together  # noqa: E402

KEY = "s3cret"
AUTH = {"Authorization": f"Bearer {KEY}"}
SLOW = {"prompt": "a long rumble", "steps": 40, "scheduler": "ddim"}  # ~10 s of worker time


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    key = tmp_path_factory.mktemp("key") / "key"
    key.write_text(KEY)
    srv = ServerProcess("--api-key-file", str(key), "--max-steps", "50", "--max-duration", "12", "--max-samples",
                        "2", "--max-body-bytes", "4096", "--timeout", "6", "--max-batch", "4", "--max-wait-ms", "300")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.terminate()


def _post(srv, body, headers=AUTH, **kwargs) -> httpx.Response:
    return post(srv, body, headers=headers, **kwargs)


def _counter(metrics: str, name: str) -> float:
    return next((float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name)), 0.0)


def _clip(response) -> np.ndarray:
    return soundfile.read(io.BytesIO(response.content), dtype="int16")[0].astype(np.int32)


def _metrics(srv) -> str:
    return srv.client.get("/metrics", headers=AUTH).text


def test_the_key_is_checked_before_the_body_is_parsed(guarded):
    bad_json = guarded.client.post("/v1/audio/generate", content=b"{not json",
                                   headers={"content-type": "application/json"})
    assert bad_json.status_code == 401 and bad_json.json()["error"]["code"] == "unauthorized"
    huge = guarded.client.post("/v1/audio/generate", content=b"x" * 100_000)
    assert huge.status_code == 401  # a stranger's large body is not even read
    assert _post(guarded, {"prompt": "x", **FAST}, headers={"Authorization": KEY}).status_code == 401  # no scheme
    assert _post(guarded, {"prompt": "x", **FAST}, headers={"Authorization": f"Basic {KEY}"}).status_code == 401
    assert _post(guarded, {"prompt": "x", **FAST}, headers={"X-API-Key": KEY}).status_code == 200
    for path in ("/v1/models", "/metrics", "/docs", "/openapi.json"):
        assert guarded.client.get(path).status_code == 401, path
        assert guarded.client.get(path, headers=AUTH).status_code == 200, path
    for path in ("/health/live", "/health/ready"):
        assert guarded.client.get(path).status_code == 200, path


def test_body_size_is_capped_before_parsing(guarded):
    big = guarded.client.post("/v1/audio/generate", content=b"x" * 5000, headers=AUTH)
    assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"

    def chunks():
        for _ in range(10):
            yield b" " * 1000  # no Content-Length: the running length is what counts

    chunked = guarded.client.post("/v1/audio/generate", content=chunks(), headers=AUTH)
    assert chunked.status_code == 413
    assert _post(guarded, {"prompt": "still fine", **FAST}).status_code == 200


CAPPED = [
    ({"prompt": "x", "steps": 51, "scheduler": "ddim", "duration": 1.0}, "max_steps 50"),
    ({"prompt": "x", "steps": 2, "scheduler": "ddim", "duration": 12.5}, "max_duration_s 12"),
    ({"prompt": "x", **FAST, "samples": 3}, "max_samples 2"),
    ({"prompt": "x", **FAST, "scheduler_options": {"num_train_timesteps": 1_000_000_000}}, "num_train_timesteps"),
    ({"prompt": "x", **FAST, "scheduler_options": {"prediction_type": "epsilon"}}, "prediction_type"),
    ({"prompt": "x", **FAST, "scheduler_options": {"trained_betas": [0.5] * 100}}, "trained_betas"),
    ({"prompt": "x", **FAST, "scheduler": "unipc", "scheduler_options": {"sigma_min": "x"}}, "sigma_min"),
    ({"prompt": "x", **FAST, "scheduler_options": ["use_karras_sigmas"]}, "scheduler_options"),
]


@pytest.mark.parametrize(("body", "words"), CAPPED, ids=[w for _, w in CAPPED])
def test_caps_and_sampler_options_are_json_422s(guarded, body, words):
    started = time.monotonic()
    response = _post(guarded, body, headers={**AUTH, "Accept": "application/json"})
    assert response.status_code == 422, response.text
    assert words in response.json()["error"]["message"]
    assert time.monotonic() - started < 2  # refused before any work


def test_models_shows_the_limits(guarded):
    limits = guarded.client.get("/v1/models", headers=AUTH).json()["data"][0]["limits"]
    assert limits["max_steps"] == 50 and limits["max_duration_s"] == 12 and limits["max_samples"] == 2
    assert limits["max_body_bytes"] == 4096 and limits["timeout_s"] == 6


def test_metrics_have_process_and_build_info(guarded):
    metrics = _metrics(guarded)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "tango_build_info{",
                 "python_info{"):
        assert name in metrics, name


def test_a_passed_deadline_stops_the_batch_at_the_next_step(guarded):
    before = _counter(_metrics(guarded), 'tango_jobs_withdrawn_total{reason="deadline"}')
    started = time.monotonic()
    late = _post(guarded, SLOW)
    assert late.status_code == 504
    fast = _post(guarded, {"prompt": "next", **FAST})  # the worker is free again within a step
    assert fast.status_code == 200 and time.monotonic() - started < 9  # the slow job alone would run ~10 s
    time.sleep(0.3)
    assert _counter(_metrics(guarded), 'tango_jobs_withdrawn_total{reason="deadline"}') == before + 1


def test_a_client_that_leaves_mid_batch_stops_its_rows_and_its_batch_mate_goes_on(guarded):
    """Two requests share a batch; one client hangs up after a second. Its rows leave the batch at the next step;
    the other request finishes with the clip it would have had alone."""
    before = _counter(_metrics(guarded), 'tango_jobs_withdrawn_total{reason="disconnected"}')
    stayer = {"prompt": "a steady hum", "steps": 6, "scheduler": "ddim", "seed": 11}
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", _post(guarded, stayer)))
    thread.start()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{guarded.url}/v1/audio/generate", json={**stayer, "prompt": "leaves", "seed": 12},
                   headers=AUTH, timeout=1.0)
    thread.join()
    assert result["r"].status_code == 200
    time.sleep(0.3)
    assert _counter(_metrics(guarded), 'tango_jobs_withdrawn_total{reason="disconnected"}') == before + 1
    batches = _metrics(guarded)
    assert _counter(batches, "tango_batch_size_count") > _counter(batches, 'tango_batch_size_bucket{le="1.0"}')
    alone = _post(guarded, stayer)
    clip = _clip(result["r"])
    assert np.abs(clip - _clip(alone)).max() <= INT16_LSB


def _start(prelude: str, *args: str) -> ServerProcess:
    srv = ServerProcess("--max-wait-ms", "300", *args, prelude=prelude)
    srv.wait_ready()
    return srv


OBSERVER_FAILS = """
from tango_rt.serving.service import Service
def broken(self, *args):
    raise RuntimeError("injected: observer")
Service.observe_batch = broken
"""
RUNNER_MISCOUNTS_ONCE = """
import tango_rt.serving.service as service
real, calls = service.run_jobs, []
def miscount(tango, jobs):
    calls.append(1)
    return [] if len(calls) == 1 else real(tango, jobs)
service.run_jobs = miscount
"""
FUTURE_CANCELLED_ONCE = """
from tango_rt.serving.batching import Batcher
real, calls = Batcher._run, []
def cancel_then_run(self, batch):
    calls.append(1)
    if len(calls) == 1:
        batch[0].future.cancel()  # as if its waiter gave up: set_result on it raises InvalidStateError
    real(self, batch)
Batcher._run = cancel_then_run
"""


@pytest.mark.parametrize(("prelude", "first"), [(OBSERVER_FAILS, 200), (RUNNER_MISCOUNTS_ONCE, 500),
                                                (FUTURE_CANCELLED_ONCE, 503)],
                         ids=["observer-raises", "runner-miscounts", "future-cancelled"])
def test_the_worker_survives_each_failure_point(prelude, first):
    srv = _start(prelude)
    try:
        assert srv.client.post("/v1/audio/generate", json={"prompt": "one", **FAST}).status_code == first
        assert srv.client.post("/v1/audio/generate", json={"prompt": "two", **FAST}).status_code == 200
        assert srv.client.get("/health/live").status_code == 200
    finally:
        srv.terminate()


WORKER_LOOP_DIES = """
from tango_rt.serving.batching import Batcher
real, calls = Batcher._take, []
def take(self):
    calls.append(1)
    if len(calls) == 2:
        raise RuntimeError("injected: worker loop")
    return real(self)
Batcher._take = take
"""


def test_a_dead_worker_fails_health_and_exits_non_zero():
    srv = _start(WORKER_LOOP_DIES)
    try:
        assert srv.client.post("/v1/audio/generate", json={"prompt": "one", **FAST}).status_code == 200
        time.sleep(0.3)
        live, ready = srv.client.get("/health/live"), srv.client.get("/health/ready")
        assert live.status_code == 503 and live.json()["error"]["code"] == "worker_dead"
        assert ready.status_code == 503
        refused = srv.client.post("/v1/audio/generate", json={"prompt": "two", **FAST})
        assert refused.status_code == 503 and "injected: worker loop" in refused.json()["error"]["message"]
        assert srv.process.wait(30) == 70
    finally:
        srv.terminate()


POISON_PROMPT = """
import numpy as np
from tango_rt.runtime.pipeline import TangoPipeline
real = TangoPipeline.encode_text
def encode(self, prompts, samples, guided):
    text = real(self, prompts, samples, guided)
    cond = len(text.embeddings) // 2 if guided else 0
    for i, prompt in enumerate(prompts):
        if prompt == "poison":
            text.embeddings[cond + i * samples : cond + (i + 1) * samples] = np.nan
    return text
TangoPipeline.encode_text = encode
"""


def test_nan_in_a_batch_fails_only_its_own_request():
    srv = _start(POISON_PROMPT, "--max-batch", "2")
    try:
        bodies = [{"prompt": "poison", **FAST, "seed": 1}, {"prompt": "healthy", **FAST, "seed": 2}]
        results = post_together(srv, bodies)
        assert results[0].status_code == 502 and results[0].json()["error"]["code"] == "invalid_output"
        assert results[1].status_code == 200
        metrics = srv.client.get("/metrics").text
        assert _counter(metrics, "tango_batch_size_count") > _counter(metrics, 'tango_batch_size_bucket{le="1.0"}')
        alone = post(srv, bodies[1])
        clip = _clip(results[1])
        assert np.abs(clip - _clip(alone)).max() <= INT16_LSB
    finally:
        srv.terminate()


def _post_ignoring_errors(srv, body) -> None:
    try:
        srv.client.post("/v1/audio/generate", json=body)
    except httpx.HTTPError:  # the forced exit drops the connection
        return


def test_a_second_signal_exits_at_once_with_128_plus_signal():
    srv = ServerProcess()
    try:
        srv.wait_ready()
        thread = threading.Thread(target=_post_ignoring_errors, args=(srv, SLOW), daemon=True)
        thread.start()
        time.sleep(1.0)
        srv.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert srv.process.poll() is None  # draining: the slow request is still being answered
        started = time.monotonic()
        srv.process.send_signal(signal.SIGTERM)
        assert srv.process.wait(5) == 128 + signal.SIGTERM
        assert time.monotonic() - started < 3
    finally:
        srv.terminate()


def test_a_receive_channel_that_fails_means_the_client_is_still_there(caplog):
    """Ray Serve's receive proxy raises its own errors from is_disconnected once: the request goes on waiting for
    its result or its deadline (not a 500), and the error is logged."""
    import asyncio

    from tango_rt.serving.app import _client_left

    class Broken:
        async def is_disconnected(self) -> bool:
            raise RuntimeError("proxy actor unreachable")

    class Left:
        async def is_disconnected(self) -> bool:
            return True

    assert asyncio.run(_client_left(Broken())) is False
    assert "proxy actor unreachable" in caplog.text
    assert asyncio.run(_client_left(Left())) is True
