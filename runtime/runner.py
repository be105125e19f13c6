"""The one runner: a GenerationRequest becomes audio on a loaded pipeline.

The drop-in methods (runtime/tango.py), the CLI and the server's batches (serving/jobs.py) all come here. What a
request makes decides its path; `prepare` finds it and refuses, before any network runs, what the model cannot
make:

| request                                   | kind   | run by                         |
|-------------------------------------------|--------|--------------------------------|
| text, up to one UNet pass                 | plain  | the pipeline, in batches       |
| audio with strength and / or inpaint      | edit   | Editor.edit                    |
| loop                                      | loop   | Editor.loop                    |
| text, longer than one UNet pass           | long   | Editor.stream (windows)        |
| audio with extend                         | extend | Editor.stream (windows)        |

`clips` returns whole int16 clips for any kind (windows joined); `segments` yields a windowed request's int16
segments as its windows finish. Rows are clips, prompt-major; row i draws only from `streams[i]` (default: the
request's seed, runtime/noise.py), and `wanted()` withdraws rows between steps (runtime/rows.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from . import loudness
from .audio import to_int16
from .audio_input import InputAudio
from .editing import geometry
from .editing.runs import Editor
from .errors import InputError
from .noise import NoiseSource, row_generators
from .pipeline import Sampling, TangoPipeline
from .request import GenerationRequest
from .rows import RowSet
from .schedulers import make_scheduler

PLAIN, EDIT, LOOP, LONG, EXTEND = "plain", "edit", "loop", "long", "extend"
WINDOWED = (LONG, EXTEND)

Streams = Sequence[np.random.Generator]
Wanted = Callable[[], Sequence[bool]]


@dataclass(frozen=True)
class Rendered:
    """A call's int16 clips (None for a row withdrawn part-way) and, per row, the loudness gain applied (dB; None
    where no loudness target was asked, or where the clip is silence or too short to measure)."""

    clips: list[np.ndarray | None]
    gains_db: list[float | None]


@dataclass(frozen=True)
class Prepared:
    """A request checked against the model: its kind, its clip length in samples, and its input per row."""

    request: GenerationRequest
    kind: str
    samples: int  # of each clip (an edit: the input's; an extension: the input's plus the added seconds)
    inputs: tuple[InputAudio, ...] | None = None  # one per row

    @property
    def windowed(self) -> bool:
        return self.kind in WINDOWED


class Runner:
    """Runs requests on one pipeline (not thread-safe: one call at a time, as the pipeline's backends require)."""

    def __init__(self, pipeline: TangoPipeline):
        self.pipeline = pipeline
        self.editor = Editor(pipeline)

    # ---- before any network runs ----------------------------------------------------------------------------
    def sampling(self, request: GenerationRequest, progress: bool = False) -> Sampling:
        """The request's sampler, built and set for its steps, with its UNet plan checked against the schedule."""
        scheduler = make_scheduler(request.scheduler, self.pipeline.scheduler_config, **request.sampler_options)
        scheduler.set_timesteps(request.steps)
        request.plan.calls(scheduler, range(request.steps), request.guided)  # an interval holding no step
        return Sampling(scheduler, request.steps, request.guidance, request.plan, progress)

    def prepare(self, request: GenerationRequest, inputs: Sequence[InputAudio] | None = None,
                max_audio_s: float | None = None, stream: bool = False) -> Prepared:
        """The request checked against this model: sampler and plan, the input audio (loaded, or `inputs`: one
        per row, all of one length), spans inside it, clip lengths the model accepts. `stream`: the request is to
        be sent window by window (plain text then runs as long-form, whatever its length)."""
        self.sampling(request)
        if stream and request.loudness is not None:
            raise InputError("loudness is measured over the whole clip: ask for the clip whole, not streamed")
        config = self.pipeline.config
        loaded = self._inputs(request, inputs, max_audio_s)
        if loaded is not None:
            if request.extend is not None:
                return self._extension(request, loaded)
            if stream:
                raise InputError("only long-form clips and extensions stream (with input audio, give extend=SECONDS); "
                                 "variations and inpainting come whole")
            if request.inpaint is not None:
                geometry.check_spans(request.inpaint, loaded[0].seconds)
            self.pipeline.check_latent_frames(config.latent_frames_covering(loaded[0].samples))
            return Prepared(request, EDIT, loaded[0].samples, loaded)
        duration = config.duration() if request.duration is None else request.duration
        if request.loop:
            if stream:
                raise InputError("only long-form clips and extensions stream; loops come whole")
            if (fixed := self.pipeline.fixed_frames()) is not None:
                raise InputError(f"loops are generated and decoded at lengths of their own; this model runs only "
                                 f"{config.duration(fixed):.2f} s (engines of one fixed length): build engines with a "
                                 "range (tango-rt build without --static) for loops")
            geometry.loop_layout(duration, config, self.editor.max_frames())
            return Prepared(request, LOOP, config.audio_samples(duration))
        if stream or duration > self.editor.max_seconds() + 1e-9:
            if request.latents is not None or request.noise is not None:
                raise InputError("latents= / noise= replay plain generations only; edits, loops and long-form "
                                 "clips are reproduced from their seed")
            return Prepared(request, LONG, config.audio_samples(duration))
        self.pipeline.check_latent_frames(config.latent_frames_for(duration))
        return Prepared(request, PLAIN, config.audio_samples(duration))

    def _inputs(self, request: GenerationRequest, inputs: Sequence[InputAudio] | None,
                max_audio_s: float | None) -> tuple[InputAudio, ...] | None:
        rows = len(request.rows)
        if inputs is not None:
            if len(inputs) != rows or len({inp.samples for inp in inputs}) != 1:
                raise InputError(f"give one audio input per row ({rows}), all of one length")
            return tuple(inputs)
        if request.audio is None:
            return None
        if max_audio_s is None:  # an extension encodes only the input's tail: any length; an edit, one UNet pass
            max_audio_s = None if request.extend is not None else self.editor.max_seconds()
        return (self.editor.load(request.audio, request.sample_rate, max_audio_s),) * rows

    def _extension(self, request: GenerationRequest, inputs: tuple[InputAudio, ...]) -> Prepared:
        seconds = inputs[0].seconds
        if seconds < geometry.MIN_EXTEND_INPUT_S:
            raise InputError(f"audio: {seconds:.3f} s is too short to extend (at least "
                             f"{geometry.MIN_EXTEND_INPUT_S} s)")
        return Prepared(request, EXTEND, inputs[0].samples + self.pipeline.config.audio_samples(request.extend), inputs)

    # ---- runs -------------------------------------------------------------------------------------------------
    def clips(self, request: GenerationRequest | Prepared, streams: Streams | None = None,
              wanted: Wanted | None = None, progress: bool = False, batch_size: int | None = None
              ) -> list[np.ndarray | None]:
        """int16 clips, one per row (prompt-major), None for a row withdrawn part-way. `batch_size`: prompts per
        denoising call of a plain request (the original's generate_for_batch); every other kind runs its rows in
        one call."""
        return self.render(request, streams, wanted, progress, batch_size).clips

    def render(self, request: GenerationRequest | Prepared, streams: Streams | None = None,
               wanted: Wanted | None = None, progress: bool = False, batch_size: int | None = None,
               levels: Sequence[tuple[float | None, float]] | None = None) -> Rendered:
        """`clips`, with the loudness gain of each (runtime/loudness.py): the request's `loudness` target and `peak`
        for every row, or per row `levels` (a call joining clips of several requests, each with its own)."""
        prepared = request if isinstance(request, Prepared) else self.prepare(request)
        rows = self._rows(prepared.request, streams, wanted)
        sampling = self.sampling(prepared.request, progress)
        if prepared.kind == PLAIN:
            waves = self._plain(prepared, rows, sampling, batch_size)
        elif prepared.kind == EDIT:
            waves = self.editor.edit(rows, sampling, prepared.inputs, prepared.request.edit_strength,
                                     prepared.request.inpaint or ())
        elif prepared.kind == LOOP:
            duration = prepared.request.duration or self.pipeline.config.duration()
            waves = self.editor.loop(rows, sampling, duration).waves
        else:
            pieces: dict[int, list[np.ndarray]] = {}
            for segments in self._windows(prepared, rows, sampling):
                for row, segment in segments.items():
                    pieces.setdefault(row, []).append(segment)
            waves = [np.concatenate(pieces[row]) for row in rows.kept]
        clips: list[np.ndarray | None] = [None] * len(rows)
        gains: list[float | None] = [None] * len(rows)
        levels = levels or [(prepared.request.loudness, prepared.request.peak)] * len(rows)
        for row, wave in zip(rows.kept, waves, strict=True):
            target, peak = levels[row]
            if target is not None:
                leveled = loudness.normalize(wave, self.pipeline.config.sample_rate, target, peak)
                wave, gains[row] = leveled.wave, leveled.gain_db
            clips[row] = to_int16(wave)
        return Rendered(clips, gains)

    def segments(self, request: GenerationRequest | Prepared, streams: Streams | None = None,
                 wanted: Wanted | None = None, progress: bool = False) -> Iterator[dict[int, np.ndarray]]:
        """A windowed request's int16 segments, {row: segment} for the rows still wanted, as each window finishes;
        a row's segments add up to exactly its clip."""
        prepared = request if isinstance(request, Prepared) else self.prepare(request, stream=True)
        if not prepared.windowed:
            raise InputError(f"a {prepared.kind} request comes whole: it cannot be streamed")
        rows = self._rows(prepared.request, streams, wanted)
        for segments in self._windows(prepared, rows, self.sampling(prepared.request, progress)):
            yield {row: to_int16(segment) for row, segment in segments.items()}

    def _rows(self, request: GenerationRequest, streams: Streams | None, wanted: Wanted | None) -> RowSet:
        prompts = request.rows
        streams = row_generators(request.seed, len(prompts)) if streams is None else streams
        return RowSet(prompts, NoiseSource(streams, request.latents, request.noise), wanted)

    def _windows(self, prepared: Prepared, rows: RowSet, sampling: Sampling) -> Iterator[dict[int, np.ndarray]]:
        return self.editor.stream(rows, sampling, prepared.samples, prepared.inputs)

    def _plain(self, prepared: Prepared, rows: RowSet, sampling: Sampling, batch_size: int | None
               ) -> list[np.ndarray]:
        """Text to audio in one UNet pass per batch of prompts: the original's path."""
        request, config = prepared.request, self.pipeline.config
        frames = config.latent_frames_covering(prepared.samples)
        rows.noise.check(config.latent_shape(len(rows), frames), sampling.scheduler.noise_count(),
                         sampling.scheduler.name)
        prompts, samples = request.prompts, request.samples
        batch_size = batch_size or len(prompts)
        if batch_size < len(prompts) and rows.wanted is not None:
            raise InputError("rows are withdrawn from one denoising call: run them without batch_size")
        starts = range(0, len(prompts), batch_size)
        waves = []
        for start in tqdm(starts, disable=not sampling.progress or len(starts) == 1, desc="batches"):
            batch = prompts[start : start + batch_size]
            part = rows.noise.select(range(start * samples, (start + len(batch)) * samples))
            waves.append(self.pipeline(batch, sampling, samples, part, frames, rows))
        return list(np.concatenate(waves)[:, : prepared.samples])
