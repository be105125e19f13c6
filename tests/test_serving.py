"""`tango-rt serve` as a client sees it: one real server process on a free loopback port for the module (the API
key set, faults it injects into itself on request: serving_helpers.FAULTS), real HTTP clients. What needs a socket
or a signal: health, metrics and formats end to end, batching across connections, clients that leave, streams
over chunked HTTP, audio uploads, early answers to clients that send their whole body first, slow and numerous
strangers, a stream that fails part-way, and the drain on SIGTERM (last). The rest of the API is driven in this
process (tests/test_serving_app.py). Requests use the tiny fixture with short clips and few steps."""

from __future__ import annotations

import base64
import io
import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import FIXTURE, INT16_LSB, WAV
from tango_rt.runtime.metadata import read_settings

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("torch")
soundfile = pytest.importorskip("soundfile")

from serving_helpers import AUTH, EDIT, FAST, FAULTS, GENERATE, KEY, ServerProcess, counter, post, post_together  # noqa: E402

HEADER_TIMEOUT_S, MAX_CONNECTIONS = 2, 24


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    key = tmp_path_factory.mktemp("key") / "key"
    key.write_text(KEY + "\n")
    srv = ServerProcess("--api-key-file", str(key), "--max-batch", "4", "--max-wait-ms", "400", "--max-queue", "8",
                        "--max-prompt-chars", "200", "--max-duration", "150", "--max-audio-bytes", "200000",
                        "--max-audio-seconds", "5", "--timeout", "5", "--header-timeout", str(HEADER_TIMEOUT_S),
                        "--max-connections", str(MAX_CONNECTIONS), prelude=FAULTS, headers=AUTH)
    try:
        srv.wait_live()
        early = srv.client.get("/health/ready")  # loading torch and the model takes seconds
        assert early.status_code == 503 and early.json()["error"]["code"] in ("loading", "draining")
        srv.wait_ready()
        yield srv
    finally:
        srv.terminate()


def _wav(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    data, rate = soundfile.read(io.BytesIO(response.content), dtype="int16")
    assert rate == 16000
    return data


def _metrics(srv) -> str:
    return srv.client.get("/metrics").text


def _counted(server, name: str, value: float, timeout: float = 5.0) -> bool:
    """Whether the counter reaches `value` within `timeout` seconds (the worker counts after the answer went out)."""
    until = time.monotonic() + timeout
    while counter(_metrics(server), name) < value and time.monotonic() < until:
        time.sleep(0.1)
    return counter(_metrics(server), name) == value


def _close(a: np.ndarray, b: np.ndarray, bound: int = INT16_LSB) -> bool:
    return a.shape == b.shape and int(np.abs(a.astype(np.int32) - b).max()) <= bound


def _b64() -> str:
    return base64.b64encode(WAV.read_bytes()).decode()


# ---- the API end to end ---------------------------------------------------------------------------------------------

def test_health_models_metrics_and_the_document(server):
    assert server.client.get("/health/live").json() == {"status": "alive"}
    assert server.client.get("/health/ready").json() == {"status": "ready"}
    model = server.client.get("/v1/models").json()["data"][0]
    assert model["id"] == str(FIXTURE) and model["backend"] == "torch" and model["ready"] is True
    assert model["components"]["unet"] == "torch" and model["precision"] == "fp32"
    assert model["limits"]["max_audio_bytes"] == 200000 and model["limits"]["max_duration_s"] == 150
    assert GENERATE in server.client.get("/openapi.json").json()["paths"]
    post(server, {"prompt": "a bell", **FAST})
    metrics = _metrics(server)
    for name in ("tango_requests_total", "tango_queue_depth", "tango_queue_wait_seconds_bucket",
                 "tango_batch_size_bucket", 'tango_stage_seconds_bucket{le="0.05",stage="unet_step"}',
                 "tango_request_seconds_count", 'tango_requests_total{status="200"}'):
        assert name in metrics, name


def test_generate_with_seed_timings_formats_and_json(server):
    response = post(server, {"prompt": "a dog barks", **FAST})
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    assert response.headers["x-request-id"] and "generate;dur=" in response.headers["server-timing"]
    seed = int(response.headers["x-seed"])
    assert _wav(response).shape == (16000,)
    np.testing.assert_array_equal(_wav(post(server, {"prompt": "a dog barks", **FAST, "seed": seed})),
                                  _wav(response))  # the returned seed reproduces the clip
    flac = post(server, {"prompt": "rain", **FAST, "seed": 1, "response_format": "flac"})
    assert flac.headers["content-type"] == "audio/flac"
    pcm = post(server, {"prompt": "rain", **FAST, "seed": 1, "response_format": "pcm"})
    assert pcm.headers["content-type"].startswith("audio/L16;rate=16000")
    np.testing.assert_array_equal(np.frombuffer(pcm.content, "<i2"), _wav(flac))
    answer = post(server, {"prompt": "rain", **FAST, "seed": 1, "samples": 2}).json()  # several clips: JSON
    assert answer["seed"] == 1 and answer["sample_rate"] == 16000 and len(answer["clips"]) == 2
    assert set(answer["timings_ms"]) == {"queue", "generate", "total"}
    assert soundfile.read(io.BytesIO(base64.b64decode(answer["audio"])), dtype="int16")[0].shape == (16000,)


def test_a_batched_request_equals_the_same_request_alone(server, tiny_tango):
    """Three requests arrive together and share one batch; each clip equals the request served alone and the
    in-process API with the same seed (within the int16 tolerance: the batch changes kernel order only)."""
    bodies = [{"prompt": p, **FAST, "seed": s} for p, s in [("a bell", 5), ("a car horn honks twice", 6),
                                                             ("birds", 7)]]
    before = _metrics(server)
    batched = [_wav(r) for r in post_together(server, bodies)]
    after = _metrics(server)
    assert counter(after, "tango_batch_size_count") - counter(after, 'tango_batch_size_bucket{le="1.0"}') > \
        counter(before, "tango_batch_size_count") - counter(before, 'tango_batch_size_bucket{le="1.0"}')
    for body, clip in zip(bodies, batched, strict=True):
        local = tiny_tango.generate(body["prompt"], steps=2, duration=1.0, scheduler="ddim", seed=body["seed"])
        assert _close(clip, _wav(post(server, body))) and _close(clip, local)


def test_less_unet_work_per_request_equals_the_api(server, tiny_tango):
    """guidance_interval, cache_interval and the turbo preset reach the worker (and its batch key) as in the API."""
    work = {"guidance_interval": [0.3, 5.0], "cache_interval": 2, "cache_schedule": "center"}
    clip = _wav(post(server, {"prompt": "rain", "steps": 4, "scheduler": "unipc", "duration": 1.0, "seed": 8,
                               **work}))
    local = tiny_tango.generate("rain", steps=4, scheduler="unipc", duration=1.0, seed=8,
                                guidance_interval=(0.3, 5.0), cache_interval=2, cache_schedule="center")
    plain = tiny_tango.generate("rain", steps=4, scheduler="unipc", duration=1.0, seed=8)
    assert _close(clip, local) and not _close(clip, plain)  # the plan changed the clip
    turbo = _wav(post(server, {"prompt": "rain", "preset": "turbo", "duration": 1.0, "seed": 8}))
    assert _close(turbo, tiny_tango.generate("rain", preset="turbo", duration=1.0, seed=8))


# ---- clients that leave ---------------------------------------------------------------------------------------------

def test_a_disconnected_client_is_dropped_before_its_batch(server):
    """A slow request occupies the worker; a second client gives up while queued: its job never runs."""
    before = counter(_metrics(server), 'tango_rejections_total{reason="disconnected"}')
    withdrawn = counter(_metrics(server), 'tango_jobs_withdrawn_total{reason="disconnected"}')
    # the slow one must hold the worker until the server has seen the other client go (within POLL_S): 15 steps
    # of a full-length clip are seconds here, the impatient client leaves 0.55 s after the slow one came; were it
    # reached after its deadline, it is still counted as gone (it left first), not late
    slow = threading.Thread(target=post, args=(server, {"prompt": "slow", "steps": 15, "scheduler": "ddim"}))
    slow.start()
    time.sleep(0.3)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}{GENERATE}", json={"prompt": "impatient", **FAST}, headers=AUTH, timeout=0.25)
    slow.join()
    assert _counted(server, 'tango_rejections_total{reason="disconnected"}', before + 1)
    # its job leaves the queue when the worker reaches it, counted as withdrawn: wait for that too, so the count
    # does not land in the next test's
    assert _counted(server, 'tango_jobs_withdrawn_total{reason="disconnected"}', withdrawn + 1)


def test_a_client_that_leaves_mid_batch_stops_its_rows_and_its_batch_mate_goes_on(server):
    """Two requests share a batch; one client hangs up after a second. Its rows leave the batch at the next step;
    the other request finishes with the clip it would have had alone."""
    before = counter(_metrics(server), 'tango_jobs_withdrawn_total{reason="disconnected"}')
    stayer = {"prompt": "a steady hum", "steps": 6, "scheduler": "ddim", "seed": 11, "duration": 4.0}
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", post(server, stayer)))
    thread.start()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}{GENERATE}", json={**stayer, "prompt": "leaves", "seed": 12}, headers=AUTH,
                   timeout=1.0)
    thread.join()
    assert _counted(server, 'tango_jobs_withdrawn_total{reason="disconnected"}', before + 1)
    assert _close(_wav(result["r"]), _wav(post(server, stayer)))


# ---- audio in and streams -------------------------------------------------------------------------------------------

def test_variations_and_inpainting_from_json_and_multipart_uploads(server, tiny_tango):
    original = soundfile.read(WAV, dtype="int16")[0]
    clip = _wav(post(server, {"prompt": "rain", **EDIT, "seed": 4, "audio": _b64(), "strength": 0.5}))
    assert _close(clip, tiny_tango.generate("rain", audio=WAV, strength=0.5, seed=4, **EDIT))
    request = {"prompt": "a bell", **EDIT, "seed": 5, "inpaint": [[0.4, 0.7]]}
    fixed = _wav(server.client.post(GENERATE, files={"audio": ("take.wav", WAV.read_bytes(), "audio/wav")},
                                    data={"request": json.dumps(request)}))
    outside = np.r_[0:6400, 11200:len(original)]
    np.testing.assert_array_equal(fixed[outside], original[outside])  # exactly the input outside the span
    assert not np.array_equal(fixed[6400:11200], original[6400:11200])
    bodies = [{"prompt": p, **EDIT, "seed": s, "audio": _b64(), "strength": 0.6} for p, s in [("rain", 11),
                                                                                              ("wind", 12)]]
    for body, response in zip(bodies, post_together(server, bodies), strict=True):  # one length: one batch
        assert _close(_wav(response), _wav(post(server, body)))


def test_extension_whole_and_streamed_are_the_same_clip(server, tiny_tango):
    original = soundfile.read(WAV, dtype="int16")[0]
    body = {"prompt": "rain", **EDIT, "seed": 6, "audio": _b64(), "extend": 12}
    whole = _wav(post(server, body))
    assert whole.shape == (len(original) + 12 * 16000,)
    assert _close(whole, tiny_tango.extend("rain", WAV, 12, seed=6, **EDIT), 2 * INT16_LSB)  # two windows
    with server.client.stream("POST", GENERATE, json={**body, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
        assert "content-length" not in response.headers  # chunked: sent as the windows finish
        chunks = [chunk for chunk in response.iter_bytes() if chunk]
    np.testing.assert_array_equal(soundfile.read(io.BytesIO(b"".join(chunks)), dtype="int16")[0], whole)


def test_a_long_clip_streams_window_by_window(server):
    """A 20 s clip (3 windows): the WAV header declares the exact length before any sample exists, and the first
    audio arrives well before the last; loops and long clips without stream come whole."""
    arrivals = []
    started = time.monotonic()
    body = {"prompt": "a rain bed", "steps": 1, "scheduler": "ddim", "seed": 1, "duration": 20, "stream": True}
    with server.client.stream("POST", GENERATE, json=body) as response:
        assert response.status_code == 200 and response.headers["x-seed"] == "1"
        data = b""
        for chunk in response.iter_raw():
            data += chunk
            arrivals.append((time.monotonic() - started, len(data)))
    samples = 2 * 20 * 16000
    assert data[:4] == b"RIFF" and int.from_bytes(data[40:44], "little") == samples
    assert int.from_bytes(data[4:8], "little") + 8 == len(data) and data[44 + samples :][:4] == b"LIST"  # settings
    assert read_settings(io.BytesIO(data))["options"]["duration"] == 20
    assert next(t for t, size in arrivals if size > 44) < 0.8 * arrivals[-1][0], arrivals
    pcm = post(server, {**body, "response_format": "pcm"})
    assert pcm.headers["content-type"].startswith("audio/L16;rate=16000") and pcm.content == data[44 : 44 + samples]
    assert _wav(post(server, {"prompt": "an engine", **EDIT, "seed": 3, "duration": 2.0, "loop": True})).shape == \
        (32000,)


def _stream_bytes(server, body: dict) -> int:
    received = 0
    with pytest.raises(httpx.HTTPError), server.client.stream("POST", GENERATE, json=body) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received += len(chunk)
    return received


def test_a_stream_past_its_deadline_is_cut_off_not_short(server):
    """The WAV header promised N samples; when the deadline stops the clip part-way, the response ends without its
    last chunk, so the client sees a broken transfer instead of a short file that looks whole."""
    body = {"prompt": "long", "steps": 3, "scheduler": "ddim", "seed": 0, "duration": 120, "stream": True}
    assert 44 < _stream_bytes(server, body) < 44 + 2 * 120 * 16000
    assert server.client.get("/health/ready").status_code == 200
    assert post(server, {"prompt": "next", **FAST, "duration": 0.5}).status_code == 200


def test_a_stream_whose_backend_fails_ends_at_once_either_way(server):
    """A plain RuntimeError from the UNet (what an ONNX Runtime, OpenVINO or CUDA error looks like) part-way: after
    the first window the transfer is cut off at once; before it, a 500 naming the failure and the request id, at
    once (before the fix: the first held the transfer open until the client gave up, the second waited for its
    deadline). The server is ready and serves the next request."""
    body = {"steps": 2, "scheduler": "ddim", "seed": 2, "duration": 12, "stream": True}
    started = time.monotonic()
    assert 44 < _stream_bytes(server, {**body, "prompt": "unet-fault-3"}) < 44 + 2 * 12 * 16000
    early = post(server, {**body, "prompt": "unet-fault-1"}, headers={"X-Request-Id": "req-1"})
    assert early.status_code == 500 and "injected: UNet call 1" in early.json()["error"]["message"]
    assert "req-1" in early.json()["error"]["message"] and time.monotonic() - started < 4.5  # under the deadline
    assert server.client.get("/health/ready").status_code == 200
    assert post(server, {"prompt": "next", **FAST}).status_code == 200


def test_nan_in_a_batch_fails_only_its_own_request(server):
    bodies = [{"prompt": "poison", **FAST, "seed": 1}, {"prompt": "healthy", **FAST, "seed": 2}]
    results = post_together(server, bodies)
    assert results[0].status_code == 502 and results[0].json()["error"]["code"] == "invalid_output"
    assert _close(_wav(results[1]), _wav(post(server, bodies[1])))


# ---- strangers -------------------------------------------------------------------------------------------------------

def test_clients_that_send_their_whole_body_first_hear_the_early_answer(server):
    """Python's urllib and requests write the whole body before reading: the 401 of a keyless request and the 413
    of one past the cap reach them (the gate reads and discards the body first, bounded), not a connection
    reset."""
    requests = pytest.importorskip("requests")
    big = b"x" * 2_000_000
    keyless = urllib.request.Request(f"{server.url}{GENERATE}", data=big, headers={"Content-Type":
                                                                                   "application/json"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(keyless, timeout=30)
    assert answer.value.code == 401 and json.loads(answer.value.read())["error"]["code"] == "unauthorized"
    over = requests.post(f"{server.url}{GENERATE}", data=big, headers={**AUTH, "Content-Type": "text/plain"},
                         timeout=30)
    assert over.status_code == 413 and over.json()["error"]["code"] == "body_too_large"
    assert requests.post(f"{server.url}{GENERATE}", data=big, timeout=30).status_code == 401
    assert post(server, {"prompt": "still fine", **FAST}).status_code == 200


def test_slow_and_numerous_strangers_are_bounded(server):
    """Connections whose headers never finish: past --max-connections a new one gets 503 at once; the others get
    408 and are closed after --header-timeout; the server serves throughout and afterwards."""
    sockets = []
    try:
        for _ in range(MAX_CONNECTIONS + 8):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"POST /v1/audio/generate HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            sockets.append(sock)
        time.sleep(0.5)
        answers = []
        for sock in sockets:
            sock.settimeout(HEADER_TIMEOUT_S + 5)
            answers.append(sock.recv(200).split(b"\r\n", 1)[0])
        assert answers.count(b"HTTP/1.1 503 Service Unavailable") >= 8, answers
        assert set(answers) == {b"HTTP/1.1 503 Service Unavailable", b"HTTP/1.1 408 Request Timeout"}, answers
    finally:
        for sock in sockets:
            sock.close()
    assert post(server, {"prompt": "still fine", **FAST}).status_code == 200


# ---- signals (last: the module's server drains and exits) -----------------------------------------------------------

def test_sigterm_drains_every_accepted_request(server):
    results: list[int] = []
    body = {"prompt": "drain", "steps": 6, "scheduler": "ddim", "duration": 1.0}
    threads = [threading.Thread(target=lambda: results.append(post(server, body).status_code)) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.4)  # all four accepted (queued or running)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    refused = server.client.get("/health/ready")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
    assert post(server, {"prompt": "late", **FAST}).status_code == 503
    for thread in threads:
        thread.join()
    assert results == [200] * 4
    assert server.process.wait(60) == 0


def _post_ignoring_errors(srv, body) -> None:
    try:
        post(srv, body)
    except httpx.HTTPError:  # the forced exit drops the connection
        return


def test_a_second_signal_exits_at_once_with_128_plus_signal():
    srv = ServerProcess()
    try:
        srv.wait_ready()
        thread = threading.Thread(target=_post_ignoring_errors, daemon=True,
                                  args=(srv, {"prompt": "a long rumble", "steps": 40, "scheduler": "ddim"}))
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


def test_cli_serve_needs_a_readable_key_file(tmp_path, capsys):
    from tango_rt.cli import main

    assert main(["serve", "--model", str(FIXTURE), "--api-key-file", str(tmp_path / "missing")]) == 2
    assert "--api-key-file" in capsys.readouterr().err


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
