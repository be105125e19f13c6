"""The geometry of editing audio: spans to latent frames, waveform crossfades, long-form windows, loop layout.

Pure numpy and arithmetic on the clip's time axes; the runs themselves are runtime/editing/runs.py. One latent frame is
`config.samples_per_latent_frame` samples (640 = 40 ms for Tango): frame f covers samples [640 f, 640 (f + 1)).

Defaults, each with its reason:
- CROSSFADE_S (50 ms, linear): the seam between input audio and generated audio (inpainting, extension). The
  vocoder re-creates phase, so the two sides are not sample-aligned copies; 50 ms is long enough not to click and
  short enough not to smear a transient.
- WINDOW_S (10.24 s) for long-form and extension: the clip length Tango was trained on; longer windows ask the UNet
  for structure it never saw, shorter ones give less context. An export declared for less gets its maximum.
- OVERLAP_S (2.56 s = 64 frames): the previous window's tail kept as known frames in the next window: enough
  context to carry a texture on; each 10.24 s window then adds 7.68 s (1.33x the UNet work of one pass).
  Windows are joined by a linear crossfade over the middle half of the overlap, where both windows render the same
  latents (known frames end as the source exactly) and only their context differs.
- LOOP_CROSSFADE_S (0.1 s): see `loop_wave`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import PipelineConfig
from ..errors import InputError

CROSSFADE_S = 0.05
WINDOW_S = 10.24
OVERLAP_S = 2.56
LOOP_CROSSFADE_S = 0.1
LOOP_MARGIN_FRAMES = 32  # latent frames of periodic context on each side of a loop when it is decoded (1.28 s)
MIN_EXTEND_INPUT_S = 0.32  # an input to extend must hold one UNet block of known frames
MAX_SPANS = 16  # inpainted spans per request
VARIATION_STRENGTH = 0.5  # strength of a variation when none is given: half the schedule re-run

Span = tuple[float, float]


def check_spans(spans: Sequence[Span], seconds: float, what: str = "inpaint") -> list[Span]:
    """Sorted (start, end) pairs inside [0, seconds], each non-empty, none overlapping another. The spans' type
    (a list of pairs of finite numbers) is the request's check (runtime/request.py); this is their geometry."""
    checked = sorted((float(start), float(end)) for start, end in spans)
    for i, (start, end) in enumerate(checked):
        if not 0 <= start < end:
            raise InputError(f"{what}[{i}]: ({start:g}, {end:g}) is empty or starts before 0 (need 0 <= start < end)")
        if end > seconds + 1e-9:
            raise InputError(f"{what}[{i}]: ({start:g}, {end:g}) ends after the audio, which is {seconds:.3f} s long")
    for (a0, a1), (b0, b1) in itertools.pairwise(checked):
        if b0 < a1:
            raise InputError(f"{what}: spans ({a0:g}, {a1:g}) and ({b0:g}, {b1:g}) overlap")
    return checked


def to_samples(spans: Sequence[Span], rate: int) -> list[tuple[int, int]]:
    return [(round(a * rate), round(b * rate)) for a, b in spans]


def known_frames(spans: Sequence[Span], frames: int, config: PipelineConfig) -> np.ndarray:
    """bool (1, frames): True for latent frames no span touches (kept as the source's), False for the frames a
    span overlaps (generated)."""
    per_frame = config.samples_per_latent_frame
    known = np.ones((1, frames), dtype=bool)
    for start, end in to_samples(spans, config.sample_rate):
        known[0, start // per_frame : min(frames, -(-end // per_frame))] = False
    return known


def span_weights(length: int, spans: Sequence[tuple[int, int]], fade: int) -> np.ndarray:
    """Per-sample weight of the generated audio (float32, 0 = the input, 1 = generated): 1 inside each span, with
    a linear ramp over its first and last `fade` samples (at most half the span), 0 outside. The ramps lie inside
    the spans, so outside them the result is the input exactly, whatever was generated."""
    weights = np.zeros(length, dtype=np.float32)
    for start, end in spans:
        ramp = min(fade, (end - start) // 2)
        weights[start:end] = 1
        if ramp:
            rise = np.arange(1, ramp + 1, dtype=np.float32) / np.float32(ramp + 1)
            weights[start : start + ramp] = rise
            weights[end - ramp : end] = rise[::-1]
    return weights


def composite(original: np.ndarray, generated: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """original where weights are 0 (exactly), generated where they are 1, a linear blend in between."""
    n = len(original)
    mixed = (np.float32(1) - weights) * original + weights * generated[:n]
    return np.where(weights == 0, original, mixed).astype(np.float32)


def crossfade(outgoing: np.ndarray, incoming: np.ndarray) -> np.ndarray:
    """A linear crossfade along the last axis from `outgoing` to `incoming` (same shape)."""
    n = outgoing.shape[-1]
    ramp = np.arange(1, n + 1, dtype=np.float32) / np.float32(n + 1)
    return ((np.float32(1) - ramp) * outgoing + ramp * incoming).astype(np.float32)


@dataclass(frozen=True)
class Window:
    """One UNet window of a long clip: latent frames [start, start + frames), the first `known` of them kept from
    the previous window (or the input's tail)."""

    start: int
    frames: int
    known: int


def window_frames(config: PipelineConfig, declared_max: int | None) -> tuple[int, int]:
    """(window, overlap) in latent frames: WINDOW_S and OVERLAP_S, the window capped at what an export accepts."""
    window = config.latent_frames_for(WINDOW_S)
    if declared_max is not None:
        window = min(window, declared_max)
    overlap = min(round(OVERLAP_S * config.sample_rate / config.samples_per_latent_frame), window // 2)
    return window, overlap


def plan_windows(end_frame: int, window: int, overlap: int, block: int, start: int = 0, known: int = 0,
                 fixed: bool = False) -> list[Window]:
    """Windows covering latent frames up to `end_frame`: the first starts at `start` with `known` frames of
    context, each next one keeps the previous one's last `overlap` frames; the last is as short as the UNet allows
    (a multiple of `block` frames), or, for a model of one fixed length (`fixed`: static engines), as long as the
    others: it runs past the end, and the stitcher cuts the audio there."""
    if window % block or window <= overlap:
        raise InputError(f"long-form window of {window} frames must be a multiple of {block} and exceed the overlap")
    windows = []
    while True:
        needed = end_frame - start
        frames = window if fixed else min(window, max(1, -(-needed // block)) * block)
        windows.append(Window(start, frames, known))
        if start + frames >= end_frame:
            return windows
        start, known = start + frames - overlap, overlap


def seam_zone(previous: Window, following: Window, per_frame: int) -> tuple[int, int]:
    """Samples (global) of the crossfade from one window to the next: the middle half of their overlap."""
    overlap = (previous.start + previous.frames - following.start) * per_frame
    begin = following.start * per_frame + overlap // 4
    return begin, begin + overlap // 2


@dataclass(frozen=True)
class LoopLayout:
    """A seamless loop of `samples` samples: its period in latent frames, the UNet window it is generated in, the
    span regenerated across the seam, and how its latents are tiled for decoding."""

    samples: int
    period: int  # latent frames of one loop cycle: round(samples / samples_per_latent_frame)
    window: int  # UNet frames of both passes: the period rounded up to the UNet's block
    seam: tuple[int, int]  # frames of the rolled latents regenerated in the second pass
    copies: int  # the latents decoded tiled this many times (periodic context on both sides)
    offset: int  # sample where the loop is cut from the tiled decode
    fade: int  # samples of the wrap crossfade


def loop_layout(duration: float, config: PipelineConfig, window_limit: int | None) -> LoopLayout:
    """Where a loop of `duration` seconds is generated, regenerated and cut (see runtime/editor.py's loop)."""
    per_frame, rate = config.samples_per_latent_frame, config.sample_rate
    samples = config.audio_samples(duration)
    fade = round(LOOP_CROSSFADE_S * rate)
    if samples < 2 * fade:
        raise InputError(f"loop: duration {duration:g} s is shorter than two crossfades ({2 * LOOP_CROSSFADE_S:g} s)")
    period = max(1, round(samples / per_frame))
    block = config.unet_downsample
    window = -(-period // block) * block
    half = min(period // 2, 128)
    seam = (period - period // 2 - half // 2, period - period // 2 - half // 2 + half)
    margin = LOOP_MARGIN_FRAMES + -(-fade // per_frame)
    copies = 2 if period >= 2 * margin else 3
    offset = (period // 2 if copies == 2 else period) * per_frame
    largest = max(window, -(-copies * period // block) * block)
    if window_limit is not None and largest > window_limit:
        raise InputError(f"loop: a {duration:g} s loop needs {largest} latent frames ({config.duration(largest):.2f} s)"
                         f" to be generated and decoded, more than this model accepts ({window_limit} frames)")
    return LoopLayout(samples, period, window, seam, copies, offset, fade)


def loop_wave(decoded: np.ndarray, layout: LoopLayout) -> np.ndarray:
    """Cut one loop cycle from the decode of the tiled latents and close its wrap.

    x = decoded[offset : offset + samples + fade] is one continuous stretch of the decoder's output; the loop is
    x[:samples] with its first `fade` samples crossfaded from x[samples:] (the decoder's own continuation of the
    loop's end) into x[:fade]: the loop's last sample and its first are consecutive samples of that decode, so the
    end flows into the start. When samples is a whole number of latent frames, x[samples:] and x[:fade] render the
    same latents in the same periodic context and the crossfade changes (nearly) nothing; otherwise they are the
    same audio shifted by under half a frame (20 ms)."""
    x = decoded[..., layout.offset : layout.offset + layout.samples + layout.fade]
    head = crossfade(x[..., layout.samples :], x[..., : layout.fade])
    return np.concatenate([head, x[..., layout.fade : layout.samples]], axis=-1).astype(np.float32)
