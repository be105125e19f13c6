"""The Tango-compatible API: a drop-in for declare-lab/tango's `Tango` class.

    tango = Tango("declare-lab/tango2")                 # torch, CUDA when available
    wave = tango.generate("An audience cheering and clapping")      # int16 (163872,), 16 kHz
    waves = tango.generate_for_batch(prompts, samples=2)             # [[p0s0, p0s1], [p1s0, p1s1], ...]

Same defaults and return structure as the original; one deliberate difference: waveforms are clipped to the
int16 range before conversion (the original wraps around at full scale). Extras are keyword-only: `scheduler`
("ddpm" default, as the original; "dpm++", "unipc", ... see runtime/schedulers) with `scheduler_options`,
`duration` in seconds, `seed`, and `latents` / `noise` for exact replay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .audio import to_int16
from .audio_input import AudioLike, InputAudio
from .checkpoint import DEFAULT_MODEL
from .editing import MIN_EXTEND_INPUT_S, EditOptions
from .editor import Editor, Rows
from .errors import InputError
from .guidance import UNetPlan
from .loader import load_pipeline
from .noise import NoiseSource, row_generators
from .pipeline import LiveRows, TangoPipeline
from .schedulers import DEFAULT_SCHEDULER, Scheduler, make_scheduler


def _check_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_guidance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
        raise InputError(f"guidance must be a finite number >= 0 (1 or less disables guidance), got {value!r}")
    return float(value)


def _check_prompts(prompts: Any) -> list[str]:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise InputError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    if not prompts:
        raise InputError("prompts is empty: give at least one prompt")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InputError(f"prompt {i} is a {type(prompt).__name__} ({prompt!r}), expected a string")
    return list(prompts)


def _check_seed(seed: Any) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise InputError(f"seed must be a non-negative integer or None, got {seed!r}")
    return seed


def _check_duration(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise InputError(f"duration must be a positive number of seconds, got {value!r}")
    return float(value)


class Tango:
    """Text-to-audio generation with a Tango / Tango 2 model on any backend.

    Not thread-safe: a Tango object owns its backends' sessions, buffers and CUDA streams, which one call at a
    time may use. Serve concurrent requests through one worker that owns it (tango_rt.serving does).

    Args:
        model: Hub id (default declare-lab/tango2), local checkpoint folder in the original layout, an exported
            folder (ONNX graphs / TensorRT engines), or random:full / random:tiny for timing.
        device: "cuda", "cuda:1", "cpu"; None picks CUDA when available.
        backend: "torch", "onnxruntime", "tensorrt", or per component, e.g. {"text_encoder": "torch",
            "default": "onnxruntime"}.
        name: alias of `model`, for code written against the original (`Tango(name=...)`).
        revision: Hub branch, tag or commit of `model` (a checkpoint or an exported folder on the Hub).
        **options: backend options: precision ("fp32" / "fp16"), providers, session_options, ...
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str | None = None,
        backend: str | Mapping[str, str] = "torch",
        *,
        name: str | None = None,
        revision: str | None = None,
        **options: Any,
    ):
        self.model = name or model
        self.pipeline: TangoPipeline = load_pipeline(self.model, backend, device, revision, **options)
        self._editor: Editor | None = None

    @property
    def sample_rate(self) -> int:
        return self.pipeline.config.sample_rate

    def scheduler(self, name: str = DEFAULT_SCHEDULER, **options: Any) -> Scheduler:
        """A fresh sampler by name, built from this model's scheduler config (and diffusers-style options)."""
        return make_scheduler(name, self.pipeline.scheduler_config, **options)

    def latent_frames(self, duration: float | None) -> int:
        """Latent frames for a clip of `duration` seconds (None: the original's 10.24 s), checked against the
        exported model's declared range before any compute."""
        duration = _check_duration(duration)
        config = self.pipeline.config
        frames = config.latent_frames if duration is None else config.latent_frames_for(duration)
        self.pipeline.check_latent_frames(frames)
        return frames

    @property
    def editor(self) -> Editor:
        """The editing runs (audio in, variations, inpainting, extension, long-form, loops) on this pipeline."""
        if self._editor is None:
            self._editor = Editor(self.pipeline)
        return self._editor

    def audio_to_mel(self, audio: AudioLike, sample_rate: int | None = None) -> np.ndarray:
        """The original's training front end on `audio` (a path, file bytes, or a float array at `sample_rate`,
        default 16 kHz): mono, 16 kHz, mean removed, peak 0.5, log-mel. (frames, 64) float32, frames covering the
        audio in the UNet's steps (a multiple of 32 mel frames = 0.32 s)."""
        inp = self.editor.load(audio, sample_rate, self.editor.max_seconds())
        return self.editor.log_mel(inp.normalized, self.editor.mel_frames(inp.samples))

    def encode_audio(self, audio: AudioLike, sample: bool = False, seed: int | None = None,
                     sample_rate: int | None = None) -> np.ndarray:
        """Latents (C, frames, bins) of `audio` in the UNet's space: scale_factor x the VAE posterior's mean, or
        with sample=True a draw from the posterior using the stream of `seed` (as the original's training does)."""
        inp = self.editor.load(audio, sample_rate, self.editor.max_seconds())
        frames = self.pipeline.config.latent_frames_covering(inp.samples)
        streams = row_generators(_check_seed(seed), 1) if sample else None
        return self.editor.encode([inp.normalized], frames, streams)[0]

    def generate(
        self,
        prompt: str,
        steps: int = 100,
        guidance: float = 3,
        samples: int = 1,
        disable_progress: bool = True,
        *,
        scheduler: str = DEFAULT_SCHEDULER,
        scheduler_options: Mapping[str, Any] | None = None,
        duration: float | None = None,
        seed: int | None = None,
        latents: np.ndarray | None = None,
        noise: Sequence[np.ndarray] | None = None,
        audio: AudioLike | None = None,
        sample_rate: int | None = None,
        strength: float | None = None,
        inpaint: Sequence[Sequence[float]] | None = None,
        loop: bool = False,
        guidance_interval: Sequence[float] | None = None,
        cache_interval: int = 1,
        cache_schedule: str = "uniform",
    ) -> np.ndarray:
        """One int16 waveform for `prompt`. As in the original, with samples > 1 the first sample is returned
        (all samples are generated); use generate_for_batch([prompt], samples=n) to get every one.

        duration: seconds (default: the original's 10.24 s, 163872 samples); the clip is generated at the next
        length the UNet accepts and trimmed to exactly round(duration * 16000) samples. Past what one UNet pass
        holds (an export's declared range; 40.96 s for a checkpoint) it is made in overlapping windows (long-form,
        see generate_stream).
        audio (a path, file bytes or a float array at `sample_rate`, default 16 kHz) with `strength` in (0, 1]: a
        variation of it (default strength 0.5: the last half of the schedule); with `inpaint=[(start_s, end_s),
        ...]`: those spans regenerated, the rest the input exactly. The output has the input's length and level.
        loop=True: a clip of `duration` whose end flows into its start.
        Less UNet work per step (runtime/guidance.py): `guidance_interval=(low, high)` guides only steps whose noise
        level sigma lies in (low, high] (the others run the conditional rows alone); `cache_interval=N` runs the
        full UNet every N-th step and only its shallow branch in between, on the deep feature of the last full call
        (`cache_schedule="center"`: the same number of full calls, denser mid-schedule)."""
        if not isinstance(prompt, str):
            raise InputError(f"prompt must be a string, got {type(prompt).__name__} ({prompt!r})")
        options = dict(scheduler=scheduler, scheduler_options=scheduler_options, duration=duration, seed=seed,
                       latents=latents, noise=noise, audio=audio, sample_rate=sample_rate, strength=strength,
                       inpaint=inpaint, loop=loop, plan=UNetPlan.of(guidance_interval, cache_interval, cache_schedule))
        return self._generate([prompt], steps, guidance, samples, disable_progress, **options)[0]

    def extend(
        self,
        prompt: str,
        audio: AudioLike,
        seconds: float,
        steps: int = 100,
        guidance: float = 3,
        disable_progress: bool = True,
        *,
        sample_rate: int | None = None,
        scheduler: str = DEFAULT_SCHEDULER,
        scheduler_options: Mapping[str, Any] | None = None,
        seed: int | None = None,
        guidance_interval: Sequence[float] | None = None,
        cache_interval: int = 1,
        cache_schedule: str = "uniform",
    ) -> np.ndarray:
        """int16: the input unchanged (but for a 50 ms crossfade at its very end), followed by `seconds` of audio
        that continue it (windows that keep the input's last 2.56 s as known frames; see generate_stream)."""
        return np.concatenate(list(self.generate_stream(
            prompt, None, steps, guidance, disable_progress, audio=audio, extend=seconds, sample_rate=sample_rate,
            scheduler=scheduler, scheduler_options=scheduler_options, seed=seed, guidance_interval=guidance_interval,
            cache_interval=cache_interval, cache_schedule=cache_schedule)))

    def generate_stream(
        self,
        prompt: str,
        duration: float | None = None,
        steps: int = 100,
        guidance: float = 3,
        disable_progress: bool = True,
        *,
        audio: AudioLike | None = None,
        extend: float | None = None,
        sample_rate: int | None = None,
        scheduler: str = DEFAULT_SCHEDULER,
        scheduler_options: Mapping[str, Any] | None = None,
        seed: int | None = None,
        guidance_interval: Sequence[float] | None = None,
        cache_interval: int = 1,
        cache_schedule: str = "uniform",
    ) -> Iterator[np.ndarray]:
        """int16 segments of one long clip, each as soon as its window is done (long-form), adding up to exactly
        round(duration * 16000) samples; with `audio` and `extend`, the input first, then `extend` seconds that
        continue it. Windows are 10.24 s (Tango's training length; less if an export accepts less), each keeping
        the previous window's last 2.56 s as known frames, joined by a crossfade; memory stays that of one window."""
        if not isinstance(prompt, str):
            raise InputError(f"prompt must be a string, got {type(prompt).__name__} ({prompt!r})")
        streams = row_generators(_check_seed(seed), 1)
        for segments in self.stream_rows([prompt], streams, steps, guidance, scheduler=scheduler,
                                          scheduler_options=scheduler_options, duration=duration, audio=audio,
                                          sample_rate=sample_rate, extend=extend, progress=not disable_progress,
                                          guidance_interval=guidance_interval, cache_interval=cache_interval,
                                          cache_schedule=cache_schedule):
            yield segments[0]

    def stream_rows(
        self,
        prompts: Sequence[str],
        streams: Sequence[np.random.Generator],
        steps: int = 100,
        guidance: float = 3,
        *,
        scheduler: str = DEFAULT_SCHEDULER,
        scheduler_options: Mapping[str, Any] | None = None,
        duration: float | None = None,
        audio: AudioLike | InputAudio | list[InputAudio] | None = None,
        sample_rate: int | None = None,
        extend: float | None = None,
        wanted: Callable[[], Sequence[bool]] | None = None,
        progress: bool = False,
        guidance_interval: Sequence[float] | None = None,
        cache_interval: int = 1,
        cache_schedule: str = "uniform",
    ) -> Iterator[dict[int, np.ndarray]]:
        """Long-form (or, with audio and extend, extension) for several rows in one windowed run: yields {row:
        int16 segment} per window for the rows still wanted (the serving path; row i draws only from streams[i]).
        `audio`: one input for every row, or a list with one per row (all of one length)."""
        prompts = _check_prompts(prompts)
        steps, guidance = _check_int(steps, "steps"), _check_guidance(guidance)
        sampler = self.scheduler(scheduler, **dict(scheduler_options or {}))
        sampler.set_timesteps(steps)
        plan = UNetPlan.of(guidance_interval, cache_interval, cache_schedule)
        edits = EditOptions.check(audio is not None, extend=extend,
                                  duration=None if audio is None else _check_duration(duration))
        if audio is not None and edits.extend is None:
            raise InputError("streaming with input audio extends it: give extend=SECONDS")
        inputs = None
        if audio is not None:
            inputs = self._same_length_inputs(audio, len(prompts), None) if isinstance(audio, list) else \
                [self.editor.load(audio, sample_rate, what="audio")] * len(prompts)
            if inputs[0].seconds < MIN_EXTEND_INPUT_S:
                raise InputError(f"audio: {inputs[0].seconds:.3f} s is too short to extend (at least "
                                 f"{MIN_EXTEND_INPUT_S} s)")
        config = self.pipeline.config
        total = inputs[0].samples + config.audio_samples(edits.extend) if inputs else \
            config.audio_samples(_check_duration(duration) or config.duration())
        rows = self._rows(prompts, streams, wanted)
        for segments in self.editor.stream(rows, sampler, steps, guidance, total, inputs, progress, plan):
            yield {row: to_int16(segment) for row, segment in segments.items()}

    def generate_for_batch(
        self,
        prompts: Sequence[str],
        steps: int = 100,
        guidance: float = 3,
        samples: int = 1,
        batch_size: int = 8,
        disable_progress: bool = True,
        *,
        scheduler: str = DEFAULT_SCHEDULER,
        scheduler_options: Mapping[str, Any] | None = None,
        duration: float | None = None,
        seed: int | None = None,
        latents: np.ndarray | None = None,
        noise: Sequence[np.ndarray] | None = None,
        audio: AudioLike | None = None,
        sample_rate: int | None = None,
        strength: float | None = None,
        inpaint: Sequence[Sequence[float]] | None = None,
        loop: bool = False,
        guidance_interval: Sequence[float] | None = None,
        cache_interval: int = 1,
        cache_schedule: str = "uniform",
    ) -> list[np.ndarray] | list[list[np.ndarray]]:
        """int16 waveforms: a flat list with samples == 1, else one list of `samples` waveforms per prompt.

        Row r (prompt-major) draws from its own random stream (runtime/noise.py), so `batch_size` never changes
        the audio. `latents` / `noise` cover all prompts x samples rows; they are split along with the prompts.
        audio / strength / inpaint / loop as for `generate`, one input for every prompt (edits run all rows in one
        call, whatever batch_size)."""
        prompts = _check_prompts(prompts)
        batch_size = _check_int(batch_size, "batch_size")
        waves = self._generate(
            prompts, steps, guidance, samples, disable_progress, scheduler=scheduler,
            scheduler_options=scheduler_options, duration=duration, seed=seed, latents=latents, noise=noise,
            batch_size=batch_size, audio=audio, sample_rate=sample_rate, strength=strength, inpaint=inpaint,
            loop=loop, plan=UNetPlan.of(guidance_interval, cache_interval, cache_schedule),
        )
        outputs = list(waves)
        if samples == 1:
            return outputs
        return [outputs[i : i + samples] for i in range(0, len(outputs), samples)]

    def generate_rows(
        self,
        prompts: Sequence[str],
        streams: Sequence[np.random.Generator],
        steps: int = 100,
        guidance: float = 3,
        *,
        scheduler: str = DEFAULT_SCHEDULER,
        scheduler_options: Mapping[str, Any] | None = None,
        duration: float | None = None,
        wanted: Callable[[], Sequence[bool]] | None = None,
        audio: Sequence[AudioLike | InputAudio] | None = None,
        strength: float | None = None,
        inpaint: Sequence[Sequence[float]] | None = None,
        loop: bool = False,
        guidance_interval: Sequence[float] | None = None,
        cache_interval: int = 1,
        cache_schedule: str = "uniform",
    ) -> list[np.ndarray | None]:
        """int16 clips, one per (prompt, stream) row, in one denoising call: the serving path.

        Row i draws only from streams[i], so a clip is the same whatever it is batched with (to kernel rounding:
        the batch changes summation order, and padded prompt positions are masked out). A request for n clips
        with seed s passes `row_generators(s, n)`, exactly what generate_for_batch([prompt], samples=n, seed=s)
        uses. `wanted()`, asked before every UNet step, gives one bool per row: a row that turns False is dropped
        from the batch there and comes back as None (all rows withdrawn: Interrupted). `audio` gives one input per
        row (all of one length) for variations (`strength`) and inpainting (`inpaint`); `loop` makes loops."""
        prompts = _check_prompts(prompts)
        live = LiveRows(wanted, len(prompts)) if wanted is not None else None
        audio = self._same_length_inputs(audio, len(prompts)) if audio is not None else None
        audio_rows = self._generate(prompts, steps, guidance, 1, True, scheduler=scheduler,
                                    scheduler_options=scheduler_options, duration=duration, streams=streams, live=live,
                                    audio=audio, strength=strength, inpaint=inpaint, loop=loop,
                                    plan=UNetPlan.of(guidance_interval, cache_interval, cache_schedule))
        clips: list[np.ndarray | None] = [None] * len(prompts)
        for row, clip in zip(live.kept if live else range(len(prompts)), audio_rows, strict=True):
            clips[row] = clip
        return clips

    def _same_length_inputs(self, audio: Sequence[AudioLike | InputAudio], rows: int,
                            max_seconds: float | None = math.inf) -> list[InputAudio]:
        """One input per row, all of one length (a list of paths, bytes, arrays or InputAudio)."""
        if isinstance(audio, (str, bytes)) or len(audio) != rows:
            raise InputError(f"give one audio input per row ({rows}), got {audio!r:.80}")
        limit = self.editor.max_seconds() if max_seconds == math.inf else max_seconds
        inputs = [self.editor.load(a, None, limit) for a in audio]
        if len({inp.samples for inp in inputs}) != 1:
            raise InputError("the audio inputs of one call must have one length")
        return inputs

    def _rows(self, prompts: list[str], streams: Sequence[np.random.Generator],
              wanted: Callable[[], Sequence[bool]] | None) -> Rows:
        live = LiveRows(wanted, len(prompts)) if wanted is not None else None
        return Rows(prompts, NoiseSource(streams), live)

    def _generate(
        self,
        prompts: list[str],
        steps: Any,
        guidance: Any,
        samples: Any,
        disable_progress: bool,
        *,
        scheduler: str,
        scheduler_options: Mapping[str, Any] | None,
        duration: Any,
        seed: Any = None,
        latents: np.ndarray | None = None,
        noise: Sequence[np.ndarray] | None = None,
        batch_size: int | None = None,
        streams: Sequence[np.random.Generator] | None = None,
        live: LiveRows | None = None,
        audio: AudioLike | Sequence[InputAudio] | None = None,
        sample_rate: int | None = None,
        strength: float | None = None,
        inpaint: Sequence[Sequence[float]] | None = None,
        loop: bool = False,
        plan: UNetPlan | None = None,
    ) -> np.ndarray:
        steps, samples = _check_int(steps, "steps"), _check_int(samples, "samples")
        guidance = _check_guidance(guidance)
        sampler = self.scheduler(scheduler, **dict(scheduler_options or {}))
        sampler.set_timesteps(steps)
        duration = _check_duration(duration)
        inputs = None
        if audio is not None:
            inputs = audio if isinstance(audio, list) and all(isinstance(a, InputAudio) for a in audio) else \
                [self.editor.load(audio, sample_rate, self.editor.max_seconds())] * (len(prompts) * samples)
        edits = EditOptions.check(inputs is not None, strength, inpaint, loop=loop, duration=duration,
                                  audio_seconds=inputs[0].seconds if inputs else None)
        long_form = duration is not None and duration > self.editor.max_seconds() + 1e-9
        if (edits.any or long_form) and (latents is not None or noise is not None):
            raise InputError("latents= / noise= replay plain generations only; edits, loops and long-form clips "
                             "are reproduced from their seed")
        if not (edits.any or long_form):
            return self._plain(prompts, steps, guidance, samples, disable_progress, sampler, duration, seed, latents,
                               noise, batch_size, streams, live, plan)
        expanded = [p for p in prompts for _ in range(samples)]
        streams = streams if streams is not None else row_generators(_check_seed(seed), len(expanded))
        rows = Rows(expanded, NoiseSource(streams), live)
        progress = not disable_progress
        if edits.loop:
            loop_duration = duration if duration is not None else self.pipeline.config.duration()
            return to_int16(self.editor.loop(rows, sampler, steps, guidance, loop_duration, progress, plan).waves)
        if inputs is not None:
            return to_int16(np.stack(self.editor.edit(rows, sampler, steps, guidance, inputs, edits.strength,
                                                      edits.inpaint, progress, plan)))
        total = self.pipeline.config.audio_samples(duration)
        pieces: dict[int, list[np.ndarray]] = {}
        for segments in self.editor.stream(rows, sampler, steps, guidance, total, None, progress, plan):
            for row, segment in segments.items():
                pieces.setdefault(row, []).append(segment)
        return to_int16(np.stack([np.concatenate(pieces[row]) for row in rows.kept()]))

    def _plain(self, prompts: list[str], steps: int, guidance: float, samples: int, disable_progress: bool,
               sampler: Scheduler, duration: float | None, seed: Any, latents: np.ndarray | None,
               noise: Sequence[np.ndarray] | None, batch_size: int | None,
               streams: Sequence[np.random.Generator] | None, live: LiveRows | None,
               plan: UNetPlan | None = None) -> np.ndarray:
        """Text to audio in one UNet pass per batch: the original's path."""
        frames = self.latent_frames(duration)
        rows = len(prompts) * samples
        streams = streams if streams is not None else row_generators(_check_seed(seed), rows)
        source = NoiseSource(streams, latents, noise)
        source.check(self.pipeline.config.latent_shape(rows, frames), sampler.noise_count(), sampler.name)
        batch_size = batch_size or len(prompts)
        starts = range(0, len(prompts), batch_size)
        waves = []
        for start in tqdm(starts, disable=disable_progress or len(starts) == 1, desc="batches"):
            batch = prompts[start : start + batch_size]
            part = source.select(range(start * samples, (start + len(batch)) * samples))
            waves.append(self.pipeline(batch, sampler, steps, guidance, samples, part, not disable_progress, frames,
                                       live, plan=plan))
        audio = to_int16(np.concatenate(waves))
        return audio if duration is None else audio[:, : self.pipeline.config.audio_samples(duration)]
