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
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .audio import to_int16
from .checkpoint import DEFAULT_MODEL
from .errors import InputError
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
    ) -> np.ndarray:
        """One int16 waveform for `prompt`. As in the original, with samples > 1 the first sample is returned
        (all samples are generated); use generate_for_batch([prompt], samples=n) to get every one.

        duration: seconds (default: the original's 10.24 s, 163872 samples); the clip is generated at the next
        length the UNet accepts and trimmed to exactly round(duration * 16000) samples."""
        if not isinstance(prompt, str):
            raise InputError(f"prompt must be a string, got {type(prompt).__name__} ({prompt!r})")
        options = dict(scheduler=scheduler, scheduler_options=scheduler_options, duration=duration, seed=seed,
                       latents=latents, noise=noise)
        return self._generate([prompt], steps, guidance, samples, disable_progress, **options)[0]

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
    ) -> list[np.ndarray] | list[list[np.ndarray]]:
        """int16 waveforms: a flat list with samples == 1, else one list of `samples` waveforms per prompt.

        Row r (prompt-major) draws from its own random stream (runtime/noise.py), so `batch_size` never changes
        the audio. `latents` / `noise` cover all prompts x samples rows; they are split along with the prompts."""
        prompts = _check_prompts(prompts)
        batch_size = _check_int(batch_size, "batch_size")
        waves = self._generate(
            prompts, steps, guidance, samples, disable_progress, scheduler=scheduler,
            scheduler_options=scheduler_options, duration=duration, seed=seed, latents=latents, noise=noise,
            batch_size=batch_size,
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
    ) -> list[np.ndarray | None]:
        """int16 clips, one per (prompt, stream) row, in one denoising call: the serving path.

        Row i draws only from streams[i], so a clip is the same whatever it is batched with (to kernel rounding:
        the batch changes summation order, and padded prompt positions are masked out). A request for n clips
        with seed s passes `row_generators(s, n)`, exactly what generate_for_batch([prompt], samples=n, seed=s)
        uses. `wanted()`, asked before every UNet step, gives one bool per row: a row that turns False is dropped
        from the batch there and comes back as None (all rows withdrawn: Interrupted)."""
        prompts = _check_prompts(prompts)
        live = LiveRows(wanted, len(prompts)) if wanted is not None else None
        audio = self._generate(prompts, steps, guidance, 1, True, scheduler=scheduler,
                               scheduler_options=scheduler_options, duration=duration, streams=streams, live=live)
        clips: list[np.ndarray | None] = [None] * len(prompts)
        for row, clip in zip(live.kept if live else range(len(prompts)), audio, strict=True):
            clips[row] = clip
        return clips

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
    ) -> np.ndarray:
        steps, samples = _check_int(steps, "steps"), _check_int(samples, "samples")
        guidance = _check_guidance(guidance)
        sampler = self.scheduler(scheduler, **dict(scheduler_options or {}))
        sampler.set_timesteps(steps)
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
                                       live))
        audio = to_int16(np.concatenate(waves))
        return audio if duration is None else audio[:, : self.pipeline.config.audio_samples(duration)]
