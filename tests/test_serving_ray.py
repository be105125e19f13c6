"""The Ray Serve front door for real: a local Ray instance on this CPU, two replicas of the tiny model, the same
HTTP API; requests spread over both replicas, and one replica killed while serving does not stop the service."""

from __future__ import annotations

import base64
import io
import os
import signal
import time

import numpy as np
import pytest

from conftest import FIXTURE, INT16_LSB

pytest.importorskip("ray.serve", reason="needs ray[serve]: pip install 'tango-rt[ray]'")
httpx = pytest.importorskip("httpx")
soundfile = pytest.importorskip("soundfile")

from serving_helpers import FAST, ServerProcess, post_together, server_log  # noqa: E402

pytestmark = pytest.mark.slow


def _pid(response) -> int:
    assert response.status_code == 200, response.text
    return int(response.headers["x-replica-pid"])


def test_two_replicas_share_the_load_and_survive_a_killed_replica(tiny_tango):
    srv = ServerProcess("--ray", "--replicas", "2", "--max-batch", "2")
    try:
        srv.wait_ready(timeout=300)
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
        victim = sorted(pids)[0]
        os.kill(victim, signal.SIGKILL)
        statuses = []
        for _ in range(8):
            try:
                statuses.append(srv.client.post("/v1/audio/generate", json=body, timeout=120).status_code)
            except httpx.TransportError:
                statuses.append(0)
        assert statuses[-4:] == [200] * 4, statuses  # after the kill is noticed, every request succeeds
    finally:
        srv.terminate(timeout=120)


def test_ray_checks_the_key_first_applies_the_caps_and_stops_a_late_job_between_steps(tmp_path):
    """The same gate, caps and withdrawal on the Ray front door: 401 before the body is parsed, 422 past a cap, and
    a request past its deadline gets 504 while its job leaves the replica at the next UNet step."""
    key = tmp_path / "key"
    key.write_text("k3y")
    srv = ServerProcess("--ray", "--replicas", "1", "--api-key-file", str(key), "--timeout", "4", "--max-steps", "60")
    auth = {"Authorization": "Bearer k3y"}
    try:
        srv.wait_ready(timeout=300)
        bad = srv.client.post("/v1/audio/generate", content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 401, server_log(srv, bad)
        capped = srv.client.post("/v1/audio/generate", json={"prompt": "x", **FAST, "steps": 61}, headers=auth)
        assert capped.status_code == 422 and "max_steps 60" in capped.json()["error"]["message"]
        started = time.monotonic()
        late = srv.client.post("/v1/audio/generate", json={"prompt": "slow", "steps": 40, "scheduler": "ddim"},
                               headers=auth)
        assert late.status_code == 504, server_log(srv, late)
        fast = srv.client.post("/v1/audio/generate", json={"prompt": "next", **FAST}, headers=auth)
        assert fast.status_code == 200, server_log(srv, fast)
        assert time.monotonic() - started < 9  # the late job ran ~4 s, not ~10 s
        _audio_in_and_streams(srv, auth)
    finally:
        srv.terminate(timeout=120)


def _audio_in_and_streams(srv, auth: dict) -> None:
    """Audio in and a streamed extension through Ray's batch: the same runner, the same answers."""
    wav = FIXTURE.parent / "audio-in" / "tone_16k.wav"
    audio = base64.b64encode(wav.read_bytes()).decode()
    variation = srv.client.post("/v1/audio/generate", headers=auth, json={
        "prompt": "rain", "steps": 2, "scheduler": "ddim", "seed": 4, "audio": audio, "strength": 0.5})
    assert variation.status_code == 200
    assert soundfile.read(io.BytesIO(variation.content), dtype="int16")[0].shape == (20800,)
    body = {"prompt": "rain", "steps": 1, "scheduler": "ddim", "seed": 6, "audio": audio, "extend": 12}
    with srv.client.stream("POST", "/v1/audio/generate", headers=auth, json={**body, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
        streamed = b"".join(response.iter_bytes())
    whole = srv.client.post("/v1/audio/generate", headers=auth, json=body)
    assert len(streamed) == 44 + 2 * (20800 + 12 * 16000)
    np.testing.assert_array_equal(soundfile.read(io.BytesIO(streamed), dtype="int16")[0],
                                  soundfile.read(io.BytesIO(whole.content), dtype="int16")[0])
