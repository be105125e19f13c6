"""The one masked loop (pipeline.Edit): a start part-way through the schedule from source latents, and known latent
frames kept. The truths: the start step and add_noise are diffusers' (tests/test_schedulers.py); here, on the tiny
model's torch pipeline, the loop's own contract: how many UNet calls an edit makes, known frames that end as the
source exactly (np.where: exact by construction), unknown frames that follow the seed, and rows dropped mid-run
keeping their edits aligned."""

from __future__ import annotations

import numpy as np
import pytest

from tango_rt.runtime.editing.masked import Edit
from tango_rt.runtime.errors import InputError
from tango_rt.runtime.noise import NoiseSource, row_generators
from tango_rt.runtime.rows import RowSet
from tango_rt.runtime.schedulers import make_scheduler

pytest.importorskip("torch")
FRAMES = 32


def _run(tango, prompts, edit, seed=0, sampler="ddim", steps=6, rows=None):
    pipeline = tango.pipeline
    text = pipeline.encode_text(prompts, 1, guided=True)
    noise = NoiseSource(row_generators(seed, len(prompts)))
    return pipeline.denoise(text, make_scheduler(sampler), steps, 3.0, noise, latent_frames=FRAMES, rows=rows,
                            edit=edit)


def _source(rows: int) -> np.ndarray:
    return np.random.default_rng(42).standard_normal((rows, 8, FRAMES, 16), dtype=np.float32)


@pytest.mark.parametrize(("strength", "calls"), [(1.0, 10), (0.5, 5), (0.31, 3)])
def test_strength_starts_part_way_with_that_many_unet_calls(tiny_tango, strength, calls):
    components = tiny_tango.pipeline.components
    unet, seen = components["unet"], []
    components["unet"] = lambda **feeds: seen.append(1) or unet(**feeds)
    try:
        out = _run(tiny_tango, ["rain"], Edit(_source(1), strength), steps=10)
    finally:
        components["unet"] = unet
    assert len(seen) == calls and np.isfinite(out).all()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "unipc", "dpm++sde", "euler"])
def test_known_frames_end_as_the_source_and_the_rest_follows_the_seed(tiny_tango, sampler):
    known = np.zeros((1, FRAMES), bool)
    known[:, :12] = known[:, 24:] = True  # frames 12..23 are generated
    edit = Edit(_source(1), 1.0, known)
    a, b = _run(tiny_tango, ["a dog"], edit, seed=1, sampler=sampler), _run(tiny_tango, ["a dog"], edit, seed=2,
                                                                             sampler=sampler)
    np.testing.assert_array_equal(a[:, :, known[0]], edit.source[:, :, known[0]])
    np.testing.assert_array_equal(b[:, :, known[0]], edit.source[:, :, known[0]])
    assert np.abs(a[:, :, ~known[0]] - b[:, :, ~known[0]]).max() > 1e-3  # the span depends on the seed
    plain = _run(tiny_tango, ["a dog"], None, seed=1, sampler=sampler)
    assert np.abs(a[:, :, known[0]] - plain[:, :, known[0]]).max() > 1e-3  # without the mask it would not hold


def test_the_initial_rule_noises_known_frames_with_the_runs_initial_noise(tiny_tango, monkeypatch):
    """renoise="initial" (diffusers' inpainting rule): after every step the known frames are the source noised to
    the next step's level with the run's first tensor (the seed's first draw, made again here), rows dropped
    mid-run keeping their own; the "fresh" rule (the default) draws a new tensor at each step instead."""
    known = np.zeros((2, FRAMES), bool)
    known[:, :12] = True
    seen: list[tuple[int, np.ndarray]] = []
    keep_known = Edit.keep_known

    def watch(self, latents, scheduler, index, noise):
        out = keep_known(self, latents, scheduler, index, noise)
        seen.append((index, out))
        return out

    monkeypatch.setattr(Edit, "keep_known", watch)
    asked = []
    rows = RowSet(["x", "y"], NoiseSource(row_generators(3, 2)), lambda: asked.append(1) or [True, len(asked) < 3])
    source = _source(2)
    _run(tiny_tango, ["x", "y"], Edit(source, 1.0, known, renoise="initial"), seed=3, rows=rows)
    initial = NoiseSource(row_generators(3, 2)).initial((2, 8, FRAMES, 16))
    scheduler = make_scheduler("ddim")
    scheduler.set_timesteps(6)
    assert [len(out) for _, out in seen] == [2, 2, 1, 1, 1, 1]  # row 1 leaves before the third step
    for index, out in seen[:-1]:
        rows_now = slice(None) if len(out) == 2 else slice(0, 1)
        expected = scheduler.add_noise(source[rows_now], initial[rows_now], index)
        np.testing.assert_allclose(out[:, :, :12], expected[:, :, :12], rtol=0, atol=1e-6)
    fresh = []
    monkeypatch.setattr(Edit, "keep_known", lambda self, latents, scheduler, index, noise: fresh.append(
        keep_known(self, latents, scheduler, index, noise)) or fresh[-1])
    _run(tiny_tango, ["x"], Edit(source[:1], 1.0, known[:1]), seed=3)
    expected = scheduler.add_noise(source[:1], initial[:1], 1)
    assert np.abs(fresh[0][:, :, :12] - expected[:, :, :12]).max() > 1e-3  # fresh: not the initial tensor


def test_a_withdrawn_row_takes_its_edit_with_it(tiny_tango):
    known = np.zeros((2, FRAMES), bool)
    known[0, :8], known[1, 16:] = True, True
    source = _source(2)
    asked = []

    def wanted():
        asked.append(1)
        return [len(asked) < 3, True]  # row 0 leaves before the third step

    rows = RowSet(["x", "y"], NoiseSource(row_generators(3, 2)), wanted)
    both = _run(tiny_tango, ["x", "y"], Edit(source, 1.0, known), seed=3, rows=rows)
    assert list(rows.kept) == [1] and len(both) == 1
    np.testing.assert_array_equal(both[0][:, known[1]], source[1][:, known[1]])


def test_bad_edits_are_input_errors(tiny_tango):
    with pytest.raises(InputError, match="edit source latents have shape"):
        _run(tiny_tango, ["x"], Edit(np.zeros((1, 8, 16, 16), np.float32)))
    with pytest.raises(InputError, match="known frames must be a bool array"):
        _run(tiny_tango, ["x"], Edit(_source(1), 1.0, np.ones((1, FRAMES))))
    with pytest.raises(InputError, match=r"strength must be in \(0, 1\]"):
        _run(tiny_tango, ["x"], Edit(_source(1), 1.5))
    with pytest.raises(InputError, match="renoise must be one of fresh, initial, got 'later'"):
        _run(tiny_tango, ["x"], Edit(_source(1), 1.0, np.ones((1, FRAMES), bool), renoise="later"))
    pipeline = tiny_tango.pipeline
    text = pipeline.encode_text(["x"], 1, guided=True)
    recorded = NoiseSource(row_generators(0, 1), noise=[np.zeros((1, 8, FRAMES, 16), np.float32)] * 6)
    with pytest.raises(InputError, match="cannot replay an edit"):
        pipeline.denoise(text, make_scheduler("ddpm"), 6, 3.0, recorded, latent_frames=FRAMES, edit=Edit(_source(1)))
