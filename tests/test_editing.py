"""Sound design on the masked loop: variations, inpainting, extension, long-form streaming and loops.

The tiny model's audio is noise, so the tests assert what holds whatever the weights: lengths, what must equal the
input exactly (composited by construction), what must follow the seed, the windows and overlaps documented in
runtime/editing.py, the loop property (below), the same features on ONNX Runtime and OpenVINO from one exported
folder against the torch reference, and every bad input as an InputError naming the field."""

from __future__ import annotations

import inspect
import itertools
import subprocess
import sys

import numpy as np
import pytest

from conftest import TOL_WAVE, WAV
from tango_rt.runtime.audio_input import normalize
from tango_rt.runtime.editing import geometry as editing
from tango_rt.runtime.errors import InputError

pytest.importorskip("torch")
soundfile = pytest.importorskip("soundfile")
RATE = 16000
FAST = {"steps": 3, "scheduler": "ddim", "seed": 5}


@pytest.fixture(scope="module")
def wav() -> np.ndarray:
    data, rate = soundfile.read(WAV, dtype="int16")
    assert rate == RATE
    return data


def _record(monkeypatch, pipeline, name):
    """Wrap pipeline.<name> to record the latent frames and known frames of each call."""
    calls, method = [], getattr(pipeline, name)
    signature = inspect.signature(method)

    def recording(*args, **kwargs):
        result = method(*args, **kwargs)
        arguments = signature.bind(*args, **kwargs).arguments
        frames = result.shape[2] if name == "denoise" else arguments["latents"].shape[2]
        edit = arguments.get("edit")
        known = 0 if edit is None or edit.known is None else int(edit.known[0].sum())
        calls.append((frames, known))
        return result

    monkeypatch.setattr(pipeline, name, recording)
    return calls


# ---- geometry ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spans", "match"), [
    ([(0.5, 0.4)], "empty or starts before 0"),
    ([(-0.1, 0.4)], r"inpaint\[0\] must be two finite numbers in \[0, 3600\]"),
    ([(0.2, 0.2)], "empty"),
    ([(0.2, 1.5)], "ends after the audio, which is 1.300 s long"),
    ([(0.1, 0.5), (0.4, 0.6)], "overlap"),
    ([(0.1, "x")], r"inpaint\[0\] must be two finite numbers"),
    ([0.1], r"inpaint\[0\] must be two finite numbers"),
    ([], r"inpaint must be a list of 1 to 16 \(start, end\) pairs"),
    ([(0, 0.01)] * 17, r"inpaint must be a list of 1 to 16 \(start, end\) pairs"),
])
def test_bad_spans_are_input_errors(spans, match):
    """The spans' kind (the request's check), then their geometry against a 1.3 s input."""
    from tango_rt.runtime.request import OPTIONS

    with pytest.raises(InputError, match=match):
        editing.check_spans(OPTIONS["inpaint"].check("inpaint", spans), 1.3)


def test_spans_map_to_the_latent_frames_they_touch(tiny_tango):
    config = tiny_tango.pipeline.config
    known = editing.known_frames([(0.05, 0.09), (0.5, 0.52)], 40, config)  # 640 samples = 40 ms per frame
    assert known.shape == (1, 40) and list(np.flatnonzero(~known[0])) == [1, 2, 12]  # 8320 = 13 x 640: not 13
    weights = editing.span_weights(20000, [(800, 1440), (8000, 8320)], 100)
    assert (weights[:800] == 0).all() and (weights[1440:8000] == 0).all() and (weights[8320:] == 0).all()
    assert (weights[900:1340] == 1).all() and 0 < weights[800] < weights[850] < 1  # the ramp lies inside the span
    assert weights[8000] > 0 and weights[8160] == 1  # a short span: ramps of half its length


def test_windows_overlap_as_documented(tiny_tango):
    """10.24 s windows, each keeping the previous window's last 2.56 s (64 frames) as known frames; the last window
    as short as the UNet allows; together they cover the clip."""
    config = tiny_tango.pipeline.config
    window, overlap = editing.window_frames(config, None)
    assert (window, overlap) == (256, 64)
    plan = editing.plan_windows(config.latent_frames_for(60) // 8 * 8 + 1, window, overlap, 8)
    assert [w.known for w in plan] == [0] + [64] * (len(plan) - 1)
    assert all(b.start == a.start + a.frames - 64 for a, b in itertools.pairwise(plan))
    assert all(w.frames == 256 for w in plan[:-1]) and plan[-1].frames % 8 == 0 and plan[-1].frames < 256
    assert plan[-1].start + plan[-1].frames >= config.latent_frames_for(60)
    assert editing.window_frames(config, 128) == (128, 64)  # an export declared for 5.12 s: windows of its maximum
    zone = editing.seam_zone(plan[0], plan[1], 640)
    assert zone == ((192 + 16) * 640, (192 + 48) * 640)  # the middle half of the 64-frame overlap


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"strength": 0.5}, "strength need"),
    ({"inpaint": [(0, 1)]}, "inpaint need"),
    ({"audio": WAV, "loop": True}, "takes no input audio"),
    ({"audio": WAV, "duration": 2.0}, "duration is the input's own length"),
    ({"audio": WAV, "strength": 0}, r"strength must be a finite number in \(0, 1\]"),
    ({"audio": WAV, "strength": 1.5}, r"strength must be a finite number in \(0, 1\]"),
    ({"audio": WAV, "strength": True}, r"strength must be a finite number in \(0, 1\]"),
    ({"audio": WAV, "inpaint": [(1.0, 2.0)]}, "ends after the audio"),
    ({"loop": True, "duration": 0.15}, "shorter than two crossfades"),
    ({"loop": "yes"}, "loop must be true or false"),
    ({"audio": WAV, "latents": np.zeros((1, 8, 40, 16), np.float32)}, "replay plain generations only"),
    ({"duration": 60, "noise": [np.zeros((1, 8, 256, 16), np.float32)]}, "replay plain generations only"),
    ({"audio": np.zeros(16000, np.float32)}, "silent"),
])
def test_bad_edit_requests_are_input_errors_and_the_object_stays_usable(tiny_tango, kwargs, match):
    with pytest.raises(InputError, match=match):
        tiny_tango.generate("rain", steps=1, **kwargs)
    assert tiny_tango.generate("rain", steps=1, duration=0.5, seed=0).shape == (8000,)


@pytest.mark.parametrize(("seconds", "match"), [(0, r"extend must be a finite number in \[0.01, 3600\]"),
                                                 (-2, r"extend must be a finite number in \[0.01, 3600\]"),
                                                 (float("nan"), r"extend must be a finite number in \[0.01, 3600\]")])
def test_bad_extension_is_an_input_error(tiny_tango, seconds, match):
    with pytest.raises(InputError, match=match):
        tiny_tango.extend("rain", WAV, seconds, steps=1)
    with pytest.raises(InputError, match="too short to extend"):
        tiny_tango.extend("rain", np.random.default_rng(0).uniform(-0.5, 0.5, 3000).astype(np.float32), 1.0, steps=1)


# ---- variations and inpainting ------------------------------------------------------------------------------------


def test_variation_has_the_inputs_length_and_follows_its_seed(tiny_tango, wav):
    one = tiny_tango.generate("rain", audio=WAV, strength=0.5, **FAST)
    again = tiny_tango.generate("rain", audio=WAV, strength=0.5, **FAST)
    other = tiny_tango.generate("rain", audio=WAV, strength=0.5, **{**FAST, "seed": 6})
    assert one.shape == wav.shape and one.dtype == np.int16
    np.testing.assert_array_equal(one, again)
    assert np.abs(one.astype(np.int32) - other).max() > 100


def test_the_input_level_is_restored_exactly():
    rng = np.random.default_rng(1)
    wave = (0.05 * rng.standard_normal(5000) + 0.01).astype(np.float32)
    inp = normalize(wave, RATE)
    assert abs(np.abs(inp.normalized).max() - 0.5) < 1e-6 and abs(inp.normalized.mean()) < 1e-6
    np.testing.assert_allclose(inp.to_input_level(inp.normalized), wave, rtol=0, atol=1e-7)


def test_inpainting_keeps_the_input_outside_the_spans_and_follows_the_seed_inside(tiny_tango, wav):
    spans = [(0.2, 0.45), (0.8, 1.0)]
    one = tiny_tango.generate("a cough", audio=WAV, inpaint=spans, **FAST)
    other = tiny_tango.generate("a cough", audio=WAV, inpaint=spans, **{**FAST, "seed": 9})
    inside = np.zeros(len(wav), bool)
    for start, end in spans:
        inside[round(start * RATE) : round(end * RATE)] = True
    assert one.shape == wav.shape
    np.testing.assert_array_equal(one[~inside], wav[~inside])  # exactly the input: composited in the waveform
    np.testing.assert_array_equal(other[~inside], wav[~inside])  # whatever the seed
    for start, end in spans:
        part = slice(round(start * RATE) + 800, round(end * RATE) - 800)  # past the 50 ms crossfades
        assert np.abs(one[part].astype(np.int32) - other[part]).max() > 100  # generated: follows the seed
        assert np.abs(one[part].astype(np.int32) - wav[part]).max() > 100  # and is not the input
    softer = tiny_tango.generate("a cough", audio=WAV, inpaint=spans, strength=0.4, **FAST)
    np.testing.assert_array_equal(softer[~inside], wav[~inside])  # strength and spans combine


# ---- extension and long-form ---------------------------------------------------------------------------------------


def test_extension_keeps_the_input_and_adds_exactly_the_seconds(tiny_tango, wav, monkeypatch):
    calls = _record(monkeypatch, tiny_tango.pipeline, "denoise")
    out = tiny_tango.extend("rain", WAV, 12.0, **FAST)
    assert out.shape == (len(wav) + 12 * RATE,) and out.dtype == np.int16
    fade = round(editing.CROSSFADE_S * RATE)
    np.testing.assert_array_equal(out[: len(wav) - fade], wav[: len(wav) - fade])
    # the input's 32 whole frames are all known in the first window (fewer than the 64-frame overlap), then windows
    # of 256 frames keep 64; the last is as short as the UNet allows
    known_input = len(wav) // 640
    assert calls[0] == (256, known_input) and calls[1][1] == 64 and len(calls) == 2
    again = tiny_tango.extend("rain", WAV, 12.0, **FAST)
    np.testing.assert_array_equal(out, again)


def test_three_minutes_long_form_in_windows_of_one_windows_memory(onnx_dir, monkeypatch):
    """A 3-minute clip (on ONNX Runtime, the lean runtime, 4x faster than torch on the tiny model): exact length,
    the documented windows, no NaN (every component boundary is checked), and no network call ever sees more than
    one window (memory stays that of one window)."""
    from tango_rt import Tango

    lean = Tango(str(onnx_dir), backend="onnxruntime")
    denoised = _record(monkeypatch, lean.pipeline, "denoise")
    decoded = _record(monkeypatch, lean.pipeline, "decode")
    segments = list(lean.generate_stream("a rain bed", 180, steps=1, guidance=1, scheduler="ddim", seed=0))
    total = sum(len(s) for s in segments)
    assert total == 180 * RATE and all(s.dtype == np.int16 for s in segments)
    config = lean.pipeline.config
    plan = editing.plan_windows(-(-180 * RATE // 640), 256, 64, 8)
    assert len(plan) == 24 and denoised == [(w.frames, w.known) for w in plan]
    assert [f for f, _ in decoded] == [w.frames for w in plan]
    assert max(f for f, _ in denoised + decoded) <= config.latent_frames_for(editing.WINDOW_S)
    assert len(segments) == len(plan)
    starts = np.cumsum([0] + [len(s) for s in segments[:-1]])
    zones = [editing.seam_zone(a, b, 640)[0] for a, b in itertools.pairwise(plan)]
    assert list(starts[1:]) == zones  # each segment ends where the next window's crossfade begins


def test_long_generate_is_the_stream_joined(tiny_tango):
    """generate(duration=...) beyond one pass (40.96 s here) is generate_stream's segments, joined."""
    whole = tiny_tango.generate("wind", duration=45, steps=1, guidance=1, scheduler="ddim", seed=3)
    joined = np.concatenate(list(tiny_tango.generate_stream("wind", 45, steps=1, guidance=1, scheduler="ddim",
                                                            seed=3)))
    assert whole.shape == (45 * RATE,)
    np.testing.assert_array_equal(whole, joined)


# ---- loops ---------------------------------------------------------------------------------------------------------
# The property that makes a loop's end flow into its start, tested directly:
# - waveform: played back to back, the loop is what the decoder renders from its latents played back to back: the
#   stretch across the wrap (the loop's last samples, then its first) equals the interior of the decode of the
#   latents tiled three times, where every sample has its true periodic neighbours. A clip decoded alone (loop=False)
#   fails this: its end and its start were rendered against silence.
# - latents: the loop's wrap lies inside the span the model regenerated with known frames on both sides (the cycle
#   rolled by half), and everything outside that span is the first pass exactly; for a clip without loop=True the
#   wrap is the first pass's clip boundary.


def _loop(tiny_tango, duration, seed=4):
    from tango_rt.runtime.noise import NoiseSource, row_generators
    from tango_rt.runtime.pipeline import Sampling
    from tango_rt.runtime.rows import RowSet

    rows = RowSet(["an engine idling"], NoiseSource(row_generators(seed, 1)))
    return tiny_tango.editor.loop(rows, Sampling(tiny_tango.scheduler("ddim"), 3, 3.0), duration)


def _wrap_error(wave: np.ndarray, latents: np.ndarray, pipeline, k: int = 1600) -> float:
    """Relative RMS difference between the wave's wrap (last k samples, then first k) and the same stretch of the
    decode of its latents tiled three times (middle copy)."""
    period = latents.shape[2]
    tiled = pipeline.decode(np.take(latents, np.arange(3 * period) % period, axis=2))[0]
    n = len(wave)
    looped = np.concatenate([wave[-k:], wave[:k]])
    reference = tiled[2 * n - k : 2 * n + k]
    return float(np.sqrt(np.mean((looped - reference) ** 2) / np.mean(reference**2)))


@pytest.mark.numerics
def test_a_loops_end_flows_into_its_start_in_the_waveform(tiny_tango):
    result = _loop(tiny_tango, 1.28)  # 32 latent frames: the loop is a whole number of frames
    wave = result.waves[0]
    assert wave.shape == (round(1.28 * RATE),) and np.isfinite(wave).all()
    error = _wrap_error(wave, result.latents, tiny_tango.pipeline)
    plain = tiny_tango.pipeline.decode(result.first_pass)[0][: len(wave)]  # the same latents, decoded as a clip
    plain_error = _wrap_error(plain, result.first_pass[:, :, : result.layout.period], tiny_tango.pipeline)
    print(f"wrap error: loop {error:.2e}, plain clip {plain_error:.2e}")
    assert error < 100 * TOL_WAVE["rtol"]  # float rounding of two decodes of the same periodic latents
    assert plain_error > 0.05  # a clip rendered alone: its edges were decoded against silence


def test_a_loops_wrap_was_regenerated_between_known_frames(tiny_tango):
    result = _loop(tiny_tango, 2.0)
    layout, period = result.layout, result.layout.period
    # the loop's cycle starts half a cycle into the first pass: its frame period - period // 2 is the first pass's
    # wrap (the first pass's last frame, then its first)
    rolled_first = np.roll(result.first_pass[:, :, :period], -(period // 2), axis=2)
    rolled_loop = result.latents
    inside = np.zeros(period, bool)
    inside[layout.seam[0] : layout.seam[1]] = True
    np.testing.assert_array_equal(rolled_loop[:, :, ~inside], rolled_first[:, :, ~inside])
    wrap = period - period // 2
    assert layout.seam[0] < wrap - 1 and wrap < layout.seam[1] - 1  # the first pass's wrap is inside the span ...
    assert np.abs(rolled_loop[:, :, inside] - rolled_first[:, :, inside]).max() > 1e-2  # ... and was regenerated
    # the loop's own wrap (its last frame, then its first) is an interior junction of the first pass
    np.testing.assert_array_equal(result.latents[:, :, [-1, 0]], result.first_pass[:, :, [period // 2 - 1,
                                                                                           period // 2]])


def test_loop_through_the_api_has_the_exact_length_and_follows_the_seed(tiny_tango):
    one = tiny_tango.generate("an engine", duration=2.5, loop=True, **FAST)  # 62.5 frames: bridged by the fade
    again = tiny_tango.generate("an engine", duration=2.5, loop=True, **FAST)
    assert one.shape == (40000,)
    np.testing.assert_array_equal(one, again)


def test_editing_on_the_lean_path_imports_no_torch(onnx_dir):
    code = f"""
import sys
from tango_rt import Tango
tango = Tango({str(onnx_dir)!r}, backend="onnxruntime")
assert tango.generate("a cough", audio={str(WAV)!r}, inpaint=[(0.2, 0.4)], steps=1, seed=0).shape == (20800,)
assert tango.extend("rain", {str(WAV)!r}, 1.0, steps=1, seed=0).shape == (36800,)
assert tango.generate("hum", duration=1.0, loop=True, steps=1, seed=0).shape == (16000,)
heavy = sorted(m for m in ("torch", "transformers", "diffusers") if m in sys.modules)
print("heavy:", heavy)
sys.exit(1 if heavy else 0)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_model_of_one_fixed_length_runs_every_window_at_it_and_refuses_loops(tiny_tango, monkeypatch):
    """Static engines (latent frames min == max) run one length only: long-form and extension windows all run at
    it (the last one past the end, cut in the waveform), the extension's tail is encoded at it, and what cannot be
    made at it (a loop, a shorter single pass) is an InputError naming the length before any work. Emulated on the
    torch model by declaring the range an engine folder would (32 frames, 1.28 s)."""
    from tango_rt.runtime.specs import DimRange

    pipeline = tiny_tango.pipeline
    monkeypatch.setattr(pipeline, "ranges", {**pipeline.ranges, "latent_frames": DimRange(32, 32, 32, 8)})
    denoised = _record(monkeypatch, pipeline, "denoise")
    encoded = []
    encode = pipeline.encode_mel
    monkeypatch.setattr(pipeline, "encode_mel", lambda mel: encoded.append(mel.shape[1]) or encode(mel))
    long = tiny_tango.generate("rain", steps=2, duration=3.0, seed=0, scheduler="ddim")
    assert long.shape == (48000,) and len(denoised) >= 3 and {f for f, _ in denoised} == {32}
    denoised.clear()
    extended = tiny_tango.extend("rain", WAV, 2.0, steps=2, seed=0, scheduler="ddim")
    assert len(extended) == round(1.3 * RATE) + 2 * RATE and {f for f, _ in denoised} == {32}
    assert encoded == [pipeline.config.mel_frames(32)]
    refused = [(dict(duration=1.0, loop=True), "loops are generated"), (dict(duration=0.5), "runs only 1.28 s")]
    for call, words in refused:
        with pytest.raises(InputError, match=words):
            tiny_tango.generate("rain", steps=2, seed=0, **call)
