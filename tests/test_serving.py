"""`tango-rt serve` as a client sees it: a real server process on a free loopback port, a real HTTP client.

Requests use the tiny fixture with 1 s clips and 2 steps (~0.1 s each), so the suite stays fast."""

from __future__ import annotations

import base64
import io
import json
import signal
import threading
import time

import numpy as np
import pytest

from conftest import FIXTURE, INT16_LSB

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("torch")
soundfile = pytest.importorskip("soundfile")

from serving_helpers import FAST, ServerProcess, post, post_together  # noqa: E402


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess("--max-batch", "4", "--max-wait-ms", "400", "--max-queue", "8", "--max-prompt-chars", "200")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.terminate()


def _wav(response) -> np.ndarray:
    data, rate = soundfile.read(io.BytesIO(response.content), dtype="int16")
    assert rate == 16000
    return data


def test_health_models_and_metrics(server):
    assert server.client.get("/health/live").json() == {"status": "alive"}
    assert server.client.get("/health/ready").json() == {"status": "ready"}
    model = server.client.get("/v1/models").json()["data"][0]
    assert model["id"] == str(FIXTURE) and model["backend"] == "torch" and model["ready"] is True
    assert model["components"]["unet"] == "torch" and model["precision"] == "fp32"
    assert "/v1/audio/generate" in server.client.get("/openapi.json").json()["paths"]
    post(server, {"prompt": "a bell", **FAST})
    metrics = server.client.get("/metrics").text
    for name in ("tango_requests_total", "tango_queue_depth", "tango_queue_wait_seconds_bucket",
                 "tango_batch_size_bucket", 'tango_stage_seconds_bucket{le="0.05",stage="unet_step"}',
                 "tango_request_seconds_count"):
        assert name in metrics
    assert 'tango_requests_total{status="200"}' in metrics


def test_generate_wav_with_seed_and_timings(server):
    response = post(server, {"prompt": "a dog barks", **FAST})
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    assert response.headers["x-request-id"] and "generate;dur=" in response.headers["server-timing"]
    seed = int(response.headers["x-seed"])
    assert _wav(response).shape == (16000,)
    again = post(server, {"prompt": "a dog barks", **FAST, "seed": seed})
    np.testing.assert_array_equal(_wav(again), _wav(response))  # the returned seed reproduces the clip


def test_formats_and_json(server):
    flac = post(server, {"prompt": "rain", **FAST, "seed": 1, "response_format": "flac"})
    assert flac.headers["content-type"] == "audio/flac"
    pcm = post(server, {"prompt": "rain", **FAST, "seed": 1, "response_format": "pcm"})
    assert pcm.headers["content-type"].startswith("audio/L16;rate=16000")
    np.testing.assert_array_equal(np.frombuffer(pcm.content, "<i2"), _wav(flac))
    answer = post(server, {"prompt": "rain", **FAST, "seed": 1, "samples": 2},
                   headers={"Accept": "application/json"}).json()
    assert answer["seed"] == 1 and answer["sample_rate"] == 16000 and len(answer["clips"]) == 2
    assert set(answer["timings_ms"]) == {"queue", "generate", "total"}
    first = soundfile.read(io.BytesIO(base64.b64decode(answer["audio"])), dtype="int16")[0]
    assert first.shape == (16000,)


def test_a_batched_request_equals_the_same_request_alone(server, tiny_tango):
    """Three requests arrive together and share one batch; each clip equals the request served alone and the
    in-process API with the same seed (within the int16 tolerance: the batch changes kernel order only)."""
    bodies = [{"prompt": p, **FAST, "seed": s} for p, s in [("a bell", 5), ("a car horn honks twice", 6),
                                                             ("birds", 7)]]
    before = server.client.get("/metrics").text
    results = post_together(server, bodies)
    batched = [_wav(r) for r in results]
    assert _batches_of_size_above_one(server.client.get("/metrics").text) > _batches_of_size_above_one(before)
    for body, clip in zip(bodies, batched, strict=True):
        alone = _wav(post(server, body))
        local = tiny_tango.generate(body["prompt"], steps=2, duration=1.0, scheduler="ddim", seed=body["seed"])
        assert np.abs(clip.astype(np.int32) - alone).max() <= INT16_LSB
        assert np.abs(clip.astype(np.int32) - local).max() <= INT16_LSB


def _batches_of_size_above_one(metrics: str) -> float:
    total = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("tango_batch_size_count"))
    single = next(float(line.split()[-1]) for line in metrics.splitlines()
                  if line.startswith('tango_batch_size_bucket{le="1.0"}'))
    return total - single


BAD = [
    ({"prompt": "x", "steps": 0}, 422, "steps"),
    ({"prompt": "x", "scheduler": "heun"}, 422, "scheduler"),
    ({"prompt": "x", "guidance": -1}, 422, "guidance"),
    ({"prompt": "x", "volume": 3}, 422, "volume"),
    ({"steps": 2}, 422, "prompt"),
    ({"prompt": "   "}, 422, "prompt must be a string with a character other than white space"),
    ({"prompt": "x", "scheduler": "dpm++", "scheduler_options": {"karras": True}}, 422, "karras"),
    ({"prompt": "x", "samples": 2}, 422, "Accept: application/json"),
    ({"prompt": "x" * 201}, 413, "at most 200"),
    ({"prompt": "x", "cache_interval": 0}, 422, "cache_interval"),
    ({"prompt": "x", "cache_schedule": "random"}, 422, "cache_schedule"),
    ({"prompt": "x", "guidance_interval": [5, 1]}, 422, "0 <= low < high"),
    ({"prompt": "x", **FAST, "guidance_interval": [20, 30]}, 422, "holds none of this run's noise levels"),
]


@pytest.mark.parametrize(("body", "status", "words"), BAD, ids=[w for _, _, w in BAD])
def test_bad_requests_get_json_errors(server, body, status, words):
    response = post(server, body)
    assert response.status_code == status
    problem = response.json()["error"]
    assert set(problem) == {"code", "message"} and words in problem["message"]
    assert post(server, {"prompt": "still fine", **FAST}).status_code == 200


def test_less_unet_work_per_request_equals_the_api(server, tiny_tango):
    """guidance_interval and cache_interval reach the worker (and its batch key) as in Tango.generate."""
    work = {"guidance_interval": [0.3, 5.0], "cache_interval": 2, "cache_schedule": "center"}
    clip = _wav(post(server, {"prompt": "rain", "steps": 4, "scheduler": "unipc", "duration": 1.0, "seed": 8,
                               **work}))
    local = tiny_tango.generate("rain", steps=4, scheduler="unipc", duration=1.0, seed=8,
                                guidance_interval=(0.3, 5.0), cache_interval=2, cache_schedule="center")
    plain = tiny_tango.generate("rain", steps=4, scheduler="unipc", duration=1.0, seed=8)
    assert np.abs(clip.astype(np.int32) - local).max() <= INT16_LSB
    assert np.abs(clip.astype(np.int32) - plain).max() > INT16_LSB  # the plan changed the clip


def test_a_disconnected_client_is_dropped_before_its_batch(server):
    """A slow request occupies the worker; a second client gives up while queued: its job never runs."""
    metrics = server.client.get("/metrics").text
    slow = threading.Thread(target=post, args=(server, {"prompt": "slow", "steps": 15, "scheduler": "ddim"}))
    slow.start()
    time.sleep(0.5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/audio/generate", json={"prompt": "impatient", **FAST}, timeout=0.5)
    slow.join()
    time.sleep(0.3)
    after = server.client.get("/metrics").text
    assert _counter(after, 'tango_rejections_total{reason="disconnected"}') == \
        _counter(metrics, 'tango_rejections_total{reason="disconnected"}') + 1


def _counter(metrics: str, name: str) -> float:
    return next((float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name)), 0.0)


def test_overload_gives_429_with_retry_after_and_deadline_504():
    srv = ServerProcess("--max-batch", "1", "--max-queue", "1", "--max-wait-ms", "0", "--timeout", "3")
    try:
        srv.wait_ready()
        body = {"prompt": "busy", "steps": 6, "scheduler": "ddim", "duration": 1.0}
        statuses: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda: statuses.append(post(srv, body))) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in statuses)
        assert codes.count(429) >= 1 and codes.count(200) >= 2 and set(codes) <= {200, 429}, codes
        rejected = next(r for r in statuses if r.status_code == 429)
        assert int(rejected.headers["retry-after"]) >= 1 and rejected.json()["error"]["code"] == "overloaded"
        late = post(srv, {"prompt": "too slow", "steps": 40, "scheduler": "ddim"})  # ~10 s > the 3 s deadline
        assert late.status_code == 504 and late.json()["error"]["code"] == "deadline_exceeded"
    finally:
        srv.terminate()


def test_api_key_and_readiness_before_warm_up(tmp_path):
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    srv = ServerProcess("--api-key-file", str(key))
    try:
        srv.wait_live()
        early = srv.client.get("/health/ready")  # loading torch and the model takes seconds
        assert early.status_code == 503 and early.json()["error"]["code"] in ("loading", "draining")
        srv.wait_ready()
        assert post(srv, {"prompt": "x", **FAST}).status_code == 401
        assert post(srv, {"prompt": "x", **FAST}, headers={"X-API-Key": "wrong"}).status_code == 401
        assert post(srv, {"prompt": "x", **FAST}, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert srv.client.get("/health/live").status_code == 200  # probes need no key
    finally:
        srv.terminate()


def test_sigterm_drains_every_accepted_request():
    srv = ServerProcess("--max-batch", "2", "--max-wait-ms", "50")
    try:
        srv.wait_ready()
        results: list[int] = []
        body = {"prompt": "drain", "steps": 6, "scheduler": "ddim", "duration": 1.0}
        threads = [threading.Thread(target=lambda: results.append(post(srv, body).status_code)) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.4)  # all four accepted (queued or running)
        srv.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        refused = srv.client.get("/health/ready")
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
        assert post(srv, {"prompt": "late", **FAST}).status_code == 503
        for t in threads:
            t.join()
        assert results == [200] * 4
        assert srv.process.wait(60) == 0
    finally:
        srv.terminate()  # a no-op after a clean drain; stops the server if an assertion failed first


def test_cli_serve_needs_a_readable_key_file(tmp_path, capsys):
    from tango_rt.cli import main

    assert main(["serve", "--model", str(FIXTURE), "--api-key-file", str(tmp_path / "missing")]) == 2
    assert "--api-key-file" in capsys.readouterr().err


def test_json_error_body_shape_is_stable(server):
    response = server.client.post("/v1/audio/generate", content=b"not json",
                                  headers={"content-type": "application/json"})
    assert response.status_code == 422 and json.loads(response.text)["error"]["code"] == "invalid_request"


def test_batch_keys_with_list_options_are_hashable_and_equal():
    """List-valued sampler options (disable_corrector) must not break grouping jobs by key; what may differ between
    the clips of one call (prompt, seed, samples) does not split it."""
    from tango_rt.runtime.request import GenerationRequest
    from tango_rt.serving.jobs import BatchKey

    def key(prompt, seed, **options):
        return BatchKey.of(GenerationRequest.build([prompt], steps=25, scheduler="unipc", seed=seed, **options))

    a = key("a", 1, guidance=3, scheduler_options={"disable_corrector": [0, 1], "use_karras_sigmas": True})
    b = key("b", 2, guidance=3.0, samples=2,
            scheduler_options={"use_karras_sigmas": True, "disable_corrector": (0, 1)})
    assert a == b and {a: 1}[b] == 1
    assert a != key("a", 1, scheduler_options={"disable_corrector": [0]})
    assert a != key("a", 1, guidance=3, scheduler_options={"disable_corrector": [0, 1], "use_karras_sigmas": True},
                    cache_interval=2)
