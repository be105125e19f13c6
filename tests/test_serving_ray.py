"""The Ray Serve front door for real: one local Ray instance on this CPU with two replicas of the tiny model and the
API key set, the same HTTP API: the gate, caps and withdrawal, audio in and streams, a stream whose backend fails
part-way, requests spread over both replicas, and one replica killed while serving (last). Faults reach the
replicas (other processes) through a sitecustomize module on their path that runs serving_helpers.FAULTS."""

from __future__ import annotations

import base64
import io
import os
import signal
import time

import numpy as np
import pytest

from conftest import INT16_LSB, WAV

pytest.importorskip("ray.serve", reason="needs ray[serve]: pip install 'tango-rt[ray]'")
httpx = pytest.importorskip("httpx")
soundfile = pytest.importorskip("soundfile")

from serving_helpers import AUTH, FAST, FAULTS, GENERATE, KEY, ServerProcess, post, post_together, server_log  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray")
    (folder / "key").write_text(KEY)
    (folder / "sitecustomize.py").write_text(FAULTS)  # every Python process of the instance injects the faults
    srv = ServerProcess("--ray", "--replicas", "2", "--max-batch", "2", "--api-key-file", str(folder / "key"),
                        "--timeout", "4", "--max-steps", "60", "--max-duration", "30", headers=AUTH,
                        env={"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])})
    try:
        srv.wait_ready(timeout=300)
        yield srv
    finally:
        srv.terminate(timeout=120)


def _pid(response) -> int:
    assert response.status_code == 200, response.text
    return int(response.headers["x-replica-pid"])


def test_ray_checks_the_key_first_applies_the_caps_and_stops_a_late_job_between_steps(ray_server):
    """401 before the body is parsed, 422 past a cap, and a request past its deadline gets 504 while its job leaves
    the replica at the next UNet step."""
    srv = ray_server
    bad = httpx.post(f"{srv.url}{GENERATE}", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 401, bad.text
    capped = post(srv, {"prompt": "x", **FAST, "steps": 61})
    assert capped.status_code == 422 and "max_steps 60" in capped.json()["error"]["message"]
    started = time.monotonic()
    late = post(srv, {"prompt": "slow", "steps": 40, "scheduler": "ddim"})
    assert late.status_code == 504, server_log(srv, late)
    fast = post(srv, {"prompt": "next", **FAST})
    assert fast.status_code == 200, server_log(srv, fast)
    assert time.monotonic() - started < 9  # the late job ran ~4 s, not ~10 s


def test_ray_audio_in_and_streams(ray_server):
    """Audio in and a streamed extension through Ray's batch: the same runner, the same answers."""
    srv = ray_server
    wav = WAV
    audio = base64.b64encode(wav.read_bytes()).decode()
    variation = post(srv, {"prompt": "rain", "steps": 2, "scheduler": "ddim", "seed": 4, "audio": audio,
                           "strength": 0.5})
    assert variation.status_code == 200
    assert soundfile.read(io.BytesIO(variation.content), dtype="int16")[0].shape == (20800,)
    body = {"prompt": "rain", "steps": 1, "scheduler": "ddim", "seed": 6, "audio": audio, "extend": 12}
    with srv.client.stream("POST", GENERATE, json={**body, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
        streamed = b"".join(response.iter_bytes())
    whole = post(srv, body)
    samples = 2 * (20800 + 12 * 16000)  # the exact length up front, then the settings after the samples
    assert int.from_bytes(streamed[40:44], "little") == samples and streamed[44 + samples :][:4] == b"LIST"
    assert int.from_bytes(streamed[4:8], "little") + 8 == len(streamed)
    np.testing.assert_array_equal(soundfile.read(io.BytesIO(streamed), dtype="int16")[0],
                                  soundfile.read(io.BytesIO(whole.content), dtype="int16")[0])


def test_ray_a_stream_whose_backend_fails_ends_at_once_either_way(ray_server):
    """The same as on uvicorn: cut off at once after the first window, a 5xx naming the failure before it."""
    srv = ray_server
    body = {"steps": 2, "scheduler": "ddim", "seed": 2, "duration": 12, "stream": True}
    received = 0
    with pytest.raises(httpx.HTTPError), srv.client.stream("POST", GENERATE,
                                                           json={**body, "prompt": "unet-fault-3"}) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received += len(chunk)
    assert 44 < received < 44 + 2 * 12 * 16000
    early = post(srv, {**body, "prompt": "unet-fault-1"})
    assert early.status_code == 500 and "injected: UNet call 1" in early.json()["error"]["message"]
    assert post(srv, {"prompt": "next", **FAST}).status_code == 200


def test_two_replicas_share_the_load_and_survive_a_killed_replica(ray_server, tiny_tango):
    srv = ray_server
    body = {"prompt": "a bell", **FAST, "seed": 3}
    pids: set[int] = set()
    deadline = time.monotonic() + 120
    while len(pids) < 2 and time.monotonic() < deadline:
        responses = post_together(srv, [body] * 4)
        pids |= {_pid(r) for r in responses}
    assert len(pids) == 2, "requests never reached the second replica"
    clip = soundfile.read(io.BytesIO(responses[0].content), dtype="int16")[0]
    local = tiny_tango.generate("a bell", steps=2, duration=1.0, scheduler="ddim", seed=3)
    assert np.abs(clip.astype(np.int32) - local).max() <= INT16_LSB  # same API, same audio
    os.kill(sorted(pids)[0], signal.SIGKILL)
    statuses = []
    for _ in range(8):
        try:
            statuses.append(srv.client.post(GENERATE, json=body, timeout=120).status_code)
        except httpx.TransportError:
            statuses.append(0)
    assert statuses[-4:] == [200] * 4, statuses  # after the kill is noticed, every request succeeds
