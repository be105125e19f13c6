"""Sound design on the one masked loop: audio in, variations, inpainting, extension, long-form and loops.

Every feature is `TangoPipeline.denoise` with an `Edit` (a start part-way from source latents, known latent frames,
or both) plus waveform work at its edges; there is no second sampling loop:

- variations: the input's latents as the start, `strength` of the schedule re-run;
- inpainting: the frames a span touches are generated, the others kept; the output is the input outside the spans
  (exactly: a composite in the waveform, since the VAE decoder's mid-block attention sees the whole clip and its
  rendering of kept frames would move a little with what was generated), with a short crossfade inside each span;
- long-form and extension: windows of WINDOW_S, each keeping the previous one's tail (or the input's) as known
  frames, decoded one by one and crossfaded; memory is one window's, segments come out as windows finish;
- loops: generated, rolled by half a cycle so the wrap lands mid-clip, the wrap regenerated between known frames,
  then decoded tiled (periodic context on both sides) and cut so the last sample flows into the first.

Rows are clips (prompt-major), each drawing only from its own random stream, so every feature is reproducible from
its seed and a clip is the same alone or in a batch. Withdrawn rows (runtime/rows.py) leave between UNet steps and
windows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..audio_input import AudioLike, InputAudio, load_input
from ..errors import CheckpointError, InputError
from ..pipeline import Sampling, TangoPipeline
from ..rows import RowSet
from ..specs import ShapeProfile
from . import geometry
from .masked import Edit
from .stitch import Stitcher


@dataclass(frozen=True)
class LoopResult:
    """A loop's waveforms (rows, samples) at the model's level, with its latents for inspection: the first pass,
    and the final cycle (period frames) whose wrap was regenerated."""

    waves: np.ndarray
    first_pass: np.ndarray
    latents: np.ndarray
    layout: geometry.LoopLayout


class Editor:
    """The editing runs of one pipeline. Stateless between calls (the pipeline holds the loaded networks)."""

    def __init__(self, pipeline: TangoPipeline):
        self.pipeline = pipeline

    # ---- limits ----------------------------------------------------------------------------------------------
    def max_frames(self) -> int:
        """The most latent frames one UNet pass takes: the export's declared maximum, or for a checkpoint the range
        exports declare by default (40.96 s for Tango), beyond which attention over the whole clip gets too big."""
        declared = self.pipeline.ranges.get("latent_frames")
        if declared is not None:
            return declared.max
        return ShapeProfile().ranges(self.pipeline.config)["latent_frames"].max

    def max_seconds(self) -> float:
        return self.pipeline.config.duration(self.max_frames())

    # ---- audio in --------------------------------------------------------------------------------------------
    def load(self, audio: AudioLike | InputAudio, sample_rate: int | None = None, max_seconds: float | None = None,
             what: str = "audio") -> InputAudio:
        if isinstance(audio, InputAudio):
            return audio
        return load_input(audio, sample_rate, self.pipeline.config.sample_rate, max_seconds, what)

    def mel_frames(self, samples: int) -> int:
        """Mel frames of the input's window: those of the fewest latent frames the UNet takes that cover it."""
        config = self.pipeline.config
        return config.mel_frames(config.latent_frames_covering(samples))

    def log_mel(self, normalized: np.ndarray, mel_frames: int) -> np.ndarray:
        frontend = self.pipeline.frontend()
        config = self.pipeline.config
        if frontend.hop != config.mel_hop or frontend.sample_rate != config.sample_rate:
            raise CheckpointError(f"the mel front end (hop {frontend.hop}, {frontend.sample_rate} Hz) does not fit the "
                                  f"vocoder (hop {config.mel_hop}, {config.sample_rate} Hz)")
        return frontend.log_mel(normalized, mel_frames)

    def encode(self, waves: Sequence[np.ndarray], frames: int, generators: Sequence[np.random.Generator] | None = None
               ) -> np.ndarray:
        """Latents (rows, C, frames, bins) of normalised waveforms: scale_factor x the VAE posterior's mean, or with
        `generators` (one per row) a draw from the posterior. Identical inputs (by identity) are encoded once."""
        config = self.pipeline.config
        distinct: dict[int, int] = {}
        for wave in waves:
            distinct.setdefault(id(wave), len(distinct))
        unique = {index: wave for wave in waves for index in [distinct[id(wave)]]}
        mels = np.stack([self.log_mel(unique[i], config.mel_frames(frames)) for i in range(len(unique))])
        mean, logvar = self.pipeline.encode_mel(mels)
        rows = [distinct[id(wave)] for wave in waves]
        mean, logvar = mean[rows], logvar[rows]
        if generators is not None:
            eps = np.stack([rng.standard_normal(mean.shape[1:], dtype=np.float32) for rng in generators])
            mean = mean + np.exp(np.float32(0.5) * logvar) * eps
        return (np.float32(config.vae_scale_factor) * mean).astype(np.float32)

    # ---- variations and inpainting -----------------------------------------------------------------------------
    def edit(self, rows: RowSet, sampling: Sampling, inputs: Sequence[InputAudio], strength: float,
             spans: Sequence[geometry.Span] = ()) -> list[np.ndarray]:
        """Variations (strength < 1) and inpainting (spans) of one input per row: float waveforms of the input's
        length at its level, for the rows still kept."""
        config = self.pipeline.config
        lengths = {inp.samples for inp in inputs}
        if len(lengths) != 1:
            raise InputError(f"inputs edited in one call must have one length, got {sorted(lengths)} samples")
        frames = config.latent_frames_covering(lengths.pop())
        self.pipeline.check_latent_frames(frames)
        source = self.encode([inp.normalized for inp in inputs], frames)
        known = geometry.known_frames(spans, frames, config) if spans else None
        text = self.pipeline.encode_text(rows.prompts, 1, sampling.guided)
        latents = self.pipeline.sample(text, sampling, rows.noise, frames, rows, Edit(source, strength, known))
        waves = self.pipeline.decode(latents)
        fade = round(geometry.CROSSFADE_S * config.sample_rate)
        outputs = []
        for wave, row in zip(waves, rows.kept, strict=True):
            inp = inputs[row]
            generated = inp.to_input_level(wave[: inp.samples])
            if spans:
                weights = geometry.span_weights(inp.samples, geometry.to_samples(spans, config.sample_rate), fade)
                generated = geometry.composite(inp.wave, generated, weights)
            outputs.append(generated)
        return outputs

    # ---- long-form and extension ---------------------------------------------------------------------------------
    def stream(self, rows: RowSet, sampling: Sampling, total: int, inputs: Sequence[InputAudio] | None = None
               ) -> Iterator[dict[int, np.ndarray]]:
        """Long-form audio of `total` samples per row, or with `inputs` (extension) the input followed by new audio
        up to `total` samples: yields {row: float segment} as windows finish (the rows still kept), the segments of
        a row adding up to exactly `total` samples."""
        config, per_frame = self.pipeline.config, self.pipeline.config.samples_per_latent_frame
        window, overlap = geometry.window_frames(config, self.max_frames())
        end_frame = -(-total // per_frame)
        text = self.pipeline.encode_text(rows.prompts, 1, sampling.guided)
        tails = None  # (rows, C, known, bins): the latent frames the next window keeps
        fixed = self.pipeline.fixed_frames() is not None  # static engines: every window at their one length
        if inputs:
            known = min(overlap, inputs[0].samples // per_frame)
            start = inputs[0].samples // per_frame - known
            tails = self._encode_tail(inputs, start, known)
            windows = geometry.plan_windows(end_frame, window, overlap, config.unet_downsample, start, known, fixed)
        else:
            windows = geometry.plan_windows(end_frame, window, overlap, config.unet_downsample, fixed=fixed)
        stitcher = Stitcher(windows, total, per_frame, inputs)
        kept = rows.kept
        for index, win in enumerate(windows):
            keep = rows.since(kept)  # rows withdrawn since the last window leave their state behind
            tails = None if tails is None else tails[keep]
            stitcher.select(keep)
            kept = rows.kept
            latents = self.pipeline.sample(text.select(kept), sampling, rows.noise.select(kept), win.frames, rows,
                                           self._window_edit(win, tails, len(kept)))
            stitcher.select(rows.since(kept))  # ... and those withdrawn during it
            kept = rows.kept
            wave = self.pipeline.decode(latents)
            if inputs:
                wave = np.stack([inputs[row].to_input_level(w) for row, w in zip(kept, wave, strict=True)])
            tails = latents[:, :, -overlap:]
            segment = stitcher.segment(index, wave, kept)
            yield {int(row): segment[i] for i, row in enumerate(kept)}

    def _window_edit(self, win: geometry.Window, tails: np.ndarray | None, rows: int) -> Edit | None:
        """A window's known frames: the previous window's (or the input's) tail at its start."""
        if not win.known:
            return None
        source = np.zeros(self.pipeline.config.latent_shape(rows, win.frames), np.float32)
        source[:, :, : win.known] = tails
        mask = np.zeros((1, win.frames), bool)
        mask[0, : win.known] = True
        return Edit(source, 1.0, mask)

    def _encode_tail(self, inputs: Sequence[InputAudio], start: int, count: int) -> np.ndarray:
        """Latent frames [start, start + count) of each input (global frames of the input's time axis), encoded
        from the input's last stretch (the VAE's receptive field needs context before `start`)."""
        config, per_frame = self.pipeline.config, self.pipeline.config.samples_per_latent_frame
        margin = geometry.LOOP_MARGIN_FRAMES  # context before the kept frames (the encoder's receptive field)
        first = max(0, start - margin)
        end_frame = start + count
        block = config.unet_downsample
        frames = self.pipeline.fixed_frames() or -(-(end_frame - first) // block) * block  # (static: padded)
        waves = [inp.normalized[first * per_frame : end_frame * per_frame] for inp in inputs]
        same = all(inp is inputs[0] for inp in inputs)
        latents = self.encode([waves[0]] * len(waves) if same else waves, frames)
        return latents[:, :, start - first : end_frame - first]

    # ---- loops --------------------------------------------------------------------------------------------------
    def loop(self, rows: RowSet, sampling: Sampling, duration: float) -> LoopResult:
        """A seamless loop of `duration` seconds per row (see geometry.loop_layout / loop_wave)."""
        config = self.pipeline.config
        layout = geometry.loop_layout(duration, config, self.max_frames())
        period = layout.period
        text = self.pipeline.encode_text(rows.prompts, 1, sampling.guided)
        first = self.pipeline.sample(text, sampling, rows.noise, layout.window, rows)
        kept = rows.kept
        cycle = first[:, :, :period]
        rolled = np.roll(cycle, -(period // 2), axis=2)  # the cycle's wrap now lies at frame period - period // 2
        source = np.take(rolled, np.arange(layout.window) % period, axis=2)
        mask = np.ones((1, layout.window), bool)
        mask[0, layout.seam[0] : layout.seam[1]] = False
        second = self.pipeline.sample(text.select(kept), sampling, rows.noise.select(kept), layout.window, rows,
                                      Edit(source, 1.0, mask))
        first = first[rows.since(kept)]
        latents = second[:, :, :period]
        block = config.unet_downsample
        tiled_frames = -(-layout.copies * period // block) * block
        decoded = self.pipeline.decode(np.ascontiguousarray(np.take(latents, np.arange(tiled_frames) % period,
                                                                    axis=2)))
        return LoopResult(geometry.loop_wave(decoded, layout), first, latents, layout)
