"""The Tango-compatible API: return types and structure of the original, seeds, replay and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURE, INT16_LSB
from tango_rt.runtime.audio import to_int16
from tango_rt.runtime.errors import InputError
from tango_rt.runtime.schedulers import SCHEDULER_NAMES

pytest.importorskip("torch")
LENGTH = 163872  # the original's waveform length for 10.24 s


def test_generate_returns_one_int16_waveform(tiny_tango):
    wave = tiny_tango.generate("A dog barks", steps=2, seed=0)
    assert isinstance(wave, np.ndarray) and wave.dtype == np.int16 and wave.shape == (LENGTH,)
    assert tiny_tango.sample_rate == 16000


def test_generate_for_batch_structure(tiny_tango):
    flat = tiny_tango.generate_for_batch(["a", "b", "c"], steps=1, batch_size=2, seed=0)
    assert isinstance(flat, list) and len(flat) == 3 and all(w.shape == (LENGTH,) for w in flat)
    nested = tiny_tango.generate_for_batch(["a", "b"], steps=1, samples=2, seed=0)
    assert len(nested) == 2 and all(len(group) == 2 for group in nested)
    assert all(w.dtype == np.int16 for group in nested for w in group)


def test_generate_with_samples_returns_first_sample_like_the_original(tiny_tango):
    first = tiny_tango.generate("rain", steps=2, samples=2, seed=3, scheduler="ddim")
    both = tiny_tango.generate_for_batch(["rain"], steps=2, samples=2, seed=3, scheduler="ddim")
    np.testing.assert_array_equal(first, both[0][0])
    assert not np.array_equal(both[0][0], both[0][1])


def test_seed_reproducible_and_seeds_differ(tiny_tango):
    a = tiny_tango.generate("wind", steps=2, seed=7)
    b = tiny_tango.generate("wind", steps=2, seed=7)
    c = tiny_tango.generate("wind", steps=2, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_batching_does_not_change_replayed_audio(tiny_tango):
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((3, 8, 256, 16), dtype=np.float32)
    noise = rng.standard_normal((2, 3, 8, 256, 16), dtype=np.float32)
    prompts = ["a bell", "a car horn honks twice", "birds"]
    one = tiny_tango.generate_for_batch(prompts, steps=2, batch_size=3, latents=latents, noise=noise)
    many = tiny_tango.generate_for_batch(prompts, steps=2, batch_size=1, latents=latents, noise=noise)
    for x, y in zip(one, many, strict=True):
        assert np.abs(x.astype(np.int32) - y).max() <= INT16_LSB


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_every_sampler_generates_through_the_api(tiny_tango, scheduler):
    wave = tiny_tango.generate("rain on a tin roof", steps=3, scheduler=scheduler, seed=1, duration=1.0)
    assert wave.shape == (16000,) and wave.dtype == np.int16 and wave.std() > 0


def test_sampler_options_reach_the_sampler(tiny_tango):
    plain = tiny_tango.generate("wind", steps=4, scheduler="dpm++", seed=2)
    karras = tiny_tango.generate("wind", steps=4, scheduler="dpm++", seed=2,
                                 scheduler_options={"use_karras_sigmas": True})
    assert not np.array_equal(plain, karras)


@pytest.mark.parametrize(("seconds", "samples"), [(1, 16000), (2.5, 40000), (10.24, 163840), (20, 320000)])
def test_duration_trims_to_the_exact_length(tiny_tango, seconds, samples):
    wave = tiny_tango.generate("a bell", steps=1, duration=seconds, seed=0, scheduler="ddim")
    assert wave.shape == (samples,) and wave.std() > 0


def test_duration_default_is_the_originals_length(tiny_tango):
    assert tiny_tango.latent_frames(None) == 256 and tiny_tango.latent_frames(10.24) == 256
    assert tiny_tango.latent_frames(1) == 32  # 20512 samples: the fewest multiple-of-8 frames covering 16000


def test_each_clip_has_its_own_random_stream(tiny_tango):
    """A clip's audio depends on its seed and row, not on how the rows are batched."""
    prompts = ["a bell", "a car horn honks twice", "birds"]
    one = tiny_tango.generate_for_batch(prompts, steps=2, batch_size=3, seed=11)
    many = tiny_tango.generate_for_batch(prompts, steps=2, batch_size=1, seed=11)
    for x, y in zip(one, many, strict=True):
        assert np.abs(x.astype(np.int32) - y).max() <= INT16_LSB


def test_no_guidance_path_runs(tiny_tango):
    assert tiny_tango.generate("a bell", steps=1, guidance=1, seed=0).shape == (LENGTH,)


def test_int16_conversion_clips_instead_of_wrapping():
    wave = np.array([1.0, -1.0, 1.5, -1.5, 0.5, -0.99999, 0.0], dtype=np.float32)
    np.testing.assert_array_equal(to_int16(wave), [32767, -32768, 32767, -32768, 16384, -32767, 0])


def test_name_keyword_alias_of_the_original():
    from tango_rt import Tango

    tango = Tango(name=str(FIXTURE), device="cpu")
    assert tango.model == str(FIXTURE)


BAD_CALLS = [
    ({"prompts": []}, "prompts is empty"),
    ({"prompts": "a dog"}, "prompts must be a list of strings"),
    ({"prompts": ["ok", 3]}, "prompt 1 is a int"),
    ({"steps": 0}, r"steps must be an integer in \[1, 1000\], got 0"),
    ({"steps": 2.5}, r"steps must be an integer in \[1, 1000\], got 2.5"),
    ({"steps": "5"}, r"steps must be an integer in \[1, 1000\], got '5'"),
    ({"steps": True}, r"steps must be an integer in \[1, 1000\], got True"),
    ({"samples": 0}, "samples must be an integer >= 1"),
    ({"guidance": -1}, r"guidance must be a finite number in \[0, 100\]"),
    ({"guidance": float("nan")}, r"guidance must be a finite number in \[0, 100\]"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"scheduler": "heun"}, r"scheduler must be one of \['ddpm'"),
    ({"scheduler": "dpm++", "scheduler_options": {"karras": True}},
     r"unknown key\(s\) \['karras'\] in scheduler_options"),
    ({"duration": 0}, r"duration must be a finite number in \[0.01, 3600\]"),
    ({"duration": float("inf")}, r"duration must be a finite number in \[0.01, 3600\]"),
    ({"duration": "5"}, r"duration must be a finite number in \[0.01, 3600\]"),
    ({"seed": -1}, r"seed must be an integer in \[0, 9223372036854775807\]"),
    ({"preset": "slow"}, r"preset must be one of \['fast', 'turbo'\]"),
    ({"cache_interval": 2.5}, r"cache_interval must be an integer in \[1, 50\]"),
    ({"latents": np.zeros((2, 8, 256, 16), np.float32)}, r"latents has shape \(2, 8, 256, 16\), expected \(1, 8,"),
    ({"noise": [np.zeros((1, 8, 256, 16), np.float32)]}, "noise has 1 arrays; ddpm with these steps needs 2"),
    ({"noise": [np.zeros((1, 8, 256, 8), np.float32)] * 2}, r"noise\[0\] has shape"),
    ({"noise": [np.zeros((1, 8, 256, 16), np.float32)] * 2, "scheduler": "ddim"}, "deterministic and draws no noise"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_CALLS, ids=[m[:30] for _, m in BAD_CALLS])
def test_bad_input_is_a_clear_error_and_the_model_stays_usable(tiny_tango, kwargs, message):
    call = {"prompts": ["a dog"], "steps": 2, **kwargs}
    with pytest.raises(InputError, match=message):
        tiny_tango.generate_for_batch(call.pop("prompts"), **call)
    assert tiny_tango.generate("a dog", steps=1, seed=0, duration=0.5).shape == (8000,)


def test_generate_rejects_a_non_string_prompt(tiny_tango):
    with pytest.raises(InputError, match="prompt must be a string"):
        tiny_tango.generate(["a list"])


@pytest.mark.parametrize("scheduler", ["unipc", "dpm++", "ddpm"])
def test_rows_withdrawn_mid_loop_leave_their_batch_mates_unchanged(tiny_tango, scheduler):
    """runner.clips(wanted=...) drops a row between UNet steps: its slot comes back None, and the other rows
    (multistep history and random streams included) are what they are in a run without the dropped row."""
    from tango_rt.runtime.noise import row_generators
    from tango_rt.runtime.request import GenerationRequest

    prompts, seeds = ["a bell", "rain", "a dog"], [1, 2, 3]
    asked = []

    def wanted():
        asked.append(1)
        return [True, len(asked) < 3, True]  # row 1 leaves before the third step

    options = dict(scheduler=scheduler, duration=1.0, steps=4)
    streams = [row_generators(s, 1)[0] for s in seeds]
    clips = tiny_tango.runner.clips(GenerationRequest.build(prompts, **options), streams, wanted)
    assert clips[1] is None and len(asked) == 4
    kept = tiny_tango.runner.clips(GenerationRequest.build([prompts[0], prompts[2]], **options),
                                   [row_generators(s, 1)[0] for s in (1, 3)])
    for got, expected in zip([clips[0], clips[2]], kept, strict=True):
        assert np.abs(got.astype(np.int32) - expected).max() <= INT16_LSB


def test_all_rows_withdrawn_interrupts_the_call(tiny_tango):
    from tango_rt.runtime.errors import Interrupted
    from tango_rt.runtime.request import GenerationRequest

    request = GenerationRequest.build(["a"], steps=3, scheduler="ddim", duration=1.0, seed=0)
    with pytest.raises(Interrupted, match="withdrawn"):
        tiny_tango.runner.clips(request, wanted=lambda: [False])
    assert tiny_tango.generate("still usable", steps=1, duration=1.0, seed=0).shape == (16000,)
