"""Audio in and streaming over HTTP: variations, inpainting, extension, loops and long-form streams on a real server
process, against the in-process API with the same seeds; uploads as base64 JSON and as multipart; every new field
bounded and refused with a JSON error before any model work; streams that are cut off, never silently short."""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import pytest

from conftest import FIXTURE, INT16_LSB

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("torch")
soundfile = pytest.importorskip("soundfile")

from serving_helpers import ServerProcess, post, post_together  # noqa: E402

WAV = FIXTURE.parent / "audio-in" / "tone_16k.wav"  # 1.3 s, 20800 samples at 16 kHz
FAST = {"steps": 2, "scheduler": "ddim"}


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess("--max-batch", "4", "--max-wait-ms", "300", "--max-duration", "25", "--max-audio-bytes",
                        "200000", "--max-audio-seconds", "5", "--timeout", "60")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.terminate()


@pytest.fixture(scope="module")
def original() -> np.ndarray:
    return soundfile.read(WAV, dtype="int16")[0]


def _b64(path=WAV) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _wav(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return soundfile.read(io.BytesIO(response.content), dtype="int16")[0]


def _close(a: np.ndarray, b: np.ndarray, bound: int = INT16_LSB) -> bool:
    return a.shape == b.shape and int(np.abs(a.astype(np.int32) - b).max()) <= bound


def test_variation_from_base64_json_equals_the_api(server, tiny_tango):
    clip = _wav(post(server, {"prompt": "rain", **FAST, "seed": 4, "audio": _b64(), "strength": 0.5}))
    local = tiny_tango.generate("rain", audio=WAV, strength=0.5, seed=4, **FAST)
    assert _close(clip, local)


def test_inpainting_from_a_multipart_upload_keeps_the_input_outside(server, original):
    fields = {"prompt": "a cough", **FAST, "seed": 2, "inpaint": [[0.3, 0.6]]}
    files = {"audio": ("in.wav", WAV.read_bytes(), "audio/wav")}
    as_json_part = server.client.post("/v1/audio/generate", files=files, data={"request": json.dumps(fields)})
    as_fields = server.client.post("/v1/audio/generate", files=files,
                                   data={k: json.dumps(v) if not isinstance(v, str) else v for k, v in fields.items()})
    one, two = _wav(as_json_part), _wav(as_fields)
    np.testing.assert_array_equal(one, two)
    outside = np.ones(len(original), bool)
    outside[round(0.3 * 16000) : round(0.6 * 16000)] = False
    np.testing.assert_array_equal(one[outside], original[outside])


def test_extension_whole_and_streamed_are_the_same_clip(server, original, tiny_tango):
    body = {"prompt": "rain", **FAST, "seed": 6, "audio": _b64(), "extend": 12}
    whole = _wav(post(server, body))
    assert whole.shape == (len(original) + 12 * 16000,)
    local = tiny_tango.extend("rain", WAV, 12, seed=6, **FAST)
    assert _close(whole, local, 2 * INT16_LSB)  # two windows: the windowed error model (tests/test_editing.py)
    chunks = []
    with server.client.stream("POST", "/v1/audio/generate", json={**body, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
        assert "content-length" not in response.headers  # chunked: sent as the windows finish
        chunks = [chunk for chunk in response.iter_bytes() if chunk]
    streamed = soundfile.read(io.BytesIO(b"".join(chunks)), dtype="int16")[0]
    np.testing.assert_array_equal(streamed, whole)


def test_a_long_clip_streams_window_by_window(server):
    """A 20 s clip (3 windows): the WAV header declares the exact length before any sample exists, and the first
    audio arrives well before the last."""
    arrivals = []
    started = time.monotonic()
    body = {"prompt": "a rain bed", "steps": 1, "scheduler": "ddim", "seed": 1, "duration": 20, "stream": True}
    with server.client.stream("POST", "/v1/audio/generate", json=body) as response:
        assert response.status_code == 200 and response.headers["x-seed"] == "1"
        data = b""
        for chunk in response.iter_raw():
            data += chunk
            arrivals.append((time.monotonic() - started, len(data)))
    header = data[:44]
    assert header[:4] == b"RIFF" and int.from_bytes(header[40:44], "little") == 2 * 20 * 16000
    assert len(data) == 44 + 2 * 20 * 16000
    first_audio = next(t for t, size in arrivals if size > 44)
    assert first_audio < 0.8 * arrivals[-1][0], arrivals
    pcm = post(server, {**body, "response_format": "pcm"})
    assert pcm.headers["content-type"].startswith("audio/L16;rate=16000")
    assert pcm.content == data[44:]  # the same clip from its seed


def test_loop_and_long_form_come_whole_without_stream(server):
    loop = _wav(post(server, {"prompt": "an engine", **FAST, "seed": 3, "duration": 2.0, "loop": True}))
    assert loop.shape == (32000,)


def _big_wav(seconds: float) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    soundfile.write(buffer, rng.uniform(-0.5, 0.5, round(seconds * 16000)).astype(np.float32), 16000,
                    format="WAV", subtype="PCM_16")
    return buffer.getvalue()


BAD = [
    ({"audio": "not base64!"}, 422, "not base64"),
    ({"audio": base64.b64encode(b"RIFF junk").decode()}, 422, "cannot read"),
    ({"audio": base64.b64encode(_big_wav(6.0)).decode()}, 422, "longer than the 5 s allowed"),  # 192 KB: fits
    ({"strength": 0.5}, 422, "strength need"),
    ({"audio": "__WAV__", "strength": 1.5}, 422, "strength"),
    ({"audio": "__WAV__", "inpaint": [[0.5, 3.0]]}, 422, "ends after the audio"),
    ({"audio": "__WAV__", "inpaint": [[0.5, 0.4]]}, 422, "empty"),
    ({"audio": "__WAV__", "inpaint": [[0, 0.1]] * 17}, 422, "inpaint"),
    ({"audio": "__WAV__", "extend": 30}, 422, "max_duration_s 25"),
    ({"audio": "__WAV__", "extend": -1}, 422, "extend"),
    ({"audio": "__WAV__", "loop": True}, 422, "takes no input audio"),
    ({"stream": True, "samples": 2}, 422, "Accept: application/json"),
    ({"stream": True, "response_format": "flac"}, 422, "no flac"),
    ({"audio": "__WAV__", "strength": 0.5, "stream": True}, 422, "only long-form clips and extensions stream"),
    ({"duration": 0.15, "loop": True}, 422, "shorter than two crossfades"),
]


@pytest.mark.parametrize(("fields", "status", "words"), BAD, ids=[w for _, _, w in BAD])
def test_bad_audio_requests_get_json_errors_before_any_work(server, fields, status, words):
    body = {"prompt": "x", **FAST, **fields}
    if body.get("audio") == "__WAV__":
        body["audio"] = _b64()
    started = time.monotonic()
    response = post(server, body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]
    assert time.monotonic() - started < 3
    assert post(server, {"prompt": "still fine", **FAST, "duration": 0.5}).status_code == 200


def test_audio_over_the_byte_cap_is_413_and_other_media_415(server):
    response = server.client.post("/v1/audio/generate", files={"audio": ("big.wav", _big_wav(7.0), "audio/wav")},
                                  data={"prompt": "x"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "audio_too_large"
    text = server.client.post("/v1/audio/generate", content=b'{"prompt": "x"}', headers={"content-type": "text/plain"})
    assert text.status_code == 415
    two = server.client.post("/v1/audio/generate", files=[("audio", ("a.wav", b"x", "audio/wav")),
                                                          ("other", ("b.wav", b"y", "audio/wav"))],
                             data={"prompt": "x"})
    assert two.status_code == 422 and "multipart" in two.json()["error"]["message"]


def test_models_shows_the_audio_limits(server):
    limits = server.client.get("/v1/models").json()["data"][0]["limits"]
    assert limits["max_audio_bytes"] == 200000 and limits["max_audio_s"] == 5 and limits["max_duration_s"] == 25


def test_variations_of_one_length_share_a_batch_and_equal_their_solo_clips(server):
    bodies = [{"prompt": p, **FAST, "seed": s, "audio": _b64(), "strength": 0.6}
              for p, s in [("rain", 11), ("wind", 12)]]
    results = post_together(server, bodies)
    for body, response in zip(bodies, results, strict=True):
        assert _close(_wav(response), _wav(post(server, body)))


def test_a_stream_past_its_deadline_is_cut_off_not_short():
    """The WAV header promised N samples; when the deadline stops the clip part-way, the response ends without
    its last chunk, so the client sees a broken transfer instead of a short file that looks whole."""
    srv = ServerProcess("--max-duration", "60", "--timeout", "4")
    try:
        srv.wait_ready()
        body = {"prompt": "long", "steps": 3, "scheduler": "ddim", "seed": 0, "duration": 50, "stream": True}
        received = 0
        with pytest.raises(httpx.HTTPError), srv.client.stream("POST", "/v1/audio/generate", json=body) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                received += len(chunk)
        assert 44 < received < 44 + 2 * 50 * 16000
        assert srv.client.get("/health/ready").status_code == 200
        assert post(srv, {"prompt": "next", **FAST, "duration": 0.5}).status_code == 200
    finally:
        srv.terminate()
