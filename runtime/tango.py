"""The Tango-compatible API: a drop-in for declare-lab/tango's `Tango` class.

    tango = Tango("declare-lab/tango2")                 # torch, CUDA when available
    wave = tango.generate("An audience cheering and clapping")      # int16 (163872,), 16 kHz
    waves = tango.generate_for_batch(prompts, samples=2)             # [[p0s0, p0s1], [p1s0, p1s1], ...]
    fast = tango.generate("A dog barks", preset="turbo")             # named settings (runtime/presets.py)

Same defaults and return structure as the original; one deliberate difference: waveforms are clipped to the
int16 range before conversion (the original wraps around at full scale). The methods keep the original's
signatures and add keyword options (`RequestOptions`), declared once in runtime/request.py with their types,
bounds and meaning; each method builds one GenerationRequest and hands it to the one runner (runtime/runner.py).
The original's defaults in the signatures are marked (options.default), so that a `preset` fills what the caller
did not write and explicit values win.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio_input import AudioLike
from .checkpoint import DEFAULT_MODEL
from .editing.runs import Editor
from .errors import InputError
from .loader import load_pipeline
from .noise import row_generators
from .options import default
from .pipeline import TangoPipeline
from .request import OPTIONS, GenerationRequest, check_value
from .runner import Runner
from .schedulers import DEFAULT_SCHEDULER, Scheduler, make_scheduler

STEPS, GUIDANCE, SAMPLES = default(100), default(3), default(1)  # the original's defaults, marked as such

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .request import RequestOptions


def _request(prompts: Sequence[str], **values: Any) -> GenerationRequest:
    """A drop-in method's request; a keyword that is no option is an InputError naming it (as build does)."""
    return GenerationRequest.build(prompts, **values)


def _one_prompt(prompt: Any) -> list[str]:
    if not isinstance(prompt, str):
        raise InputError(f"prompt must be a string, got {type(prompt).__name__} ({prompt!r})")
    return [prompt]


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
        self.runner = Runner(self.pipeline)
        self._identity = {"id": self.model, "revision": revision, "precision": options.get("precision")}

    def identity(self) -> dict[str, Any]:
        """What made this object's clips, for their settings (runtime/metadata.py): the model as given, a digest of
        what was loaded, and each network's backend."""
        if "digest" not in self._identity:
            self._identity["digest"] = self.pipeline.loader.digest() if self.pipeline.loader else None
            self._identity["backends"] = {n: c.backend for n, c in self.pipeline.components.items()}
        return dict(self._identity)

    @property
    def sample_rate(self) -> int:
        return self.pipeline.config.sample_rate

    @property
    def editor(self) -> Editor:
        """The editing runs (audio in, variations, inpainting, extension, long-form, loops) on this pipeline."""
        return self.runner.editor

    def scheduler(self, name: str = DEFAULT_SCHEDULER, **options: Any) -> Scheduler:
        """A fresh sampler by name, built from this model's scheduler config (and diffusers-style options)."""
        return make_scheduler(name, self.pipeline.scheduler_config, **options)

    def latent_frames(self, duration: float | None) -> int:
        """Latent frames for a clip of `duration` seconds (None: the original's 10.24 s), checked against the
        exported model's declared range before any compute."""
        duration = OPTIONS["duration"].check("duration", duration)
        config = self.pipeline.config
        frames = config.latent_frames if duration is None else config.latent_frames_for(duration)
        self.pipeline.check_latent_frames(frames)
        return frames

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
        seed = OPTIONS["seed"].check("seed", seed)
        inp = self.editor.load(audio, sample_rate, self.editor.max_seconds())
        frames = self.pipeline.config.latent_frames_covering(inp.samples)
        streams = row_generators(seed, 1) if sample else None
        return self.editor.encode([inp.normalized], frames, streams)[0]

    def generate(self, prompt: str, steps: int = STEPS, guidance: float = GUIDANCE, samples: int = SAMPLES,
                 disable_progress: bool = True, **options: Unpack[RequestOptions]) -> np.ndarray:
        """One int16 waveform for `prompt`. As in the original, with samples > 1 the first sample is returned
        (all samples are generated); use generate_for_batch([prompt], samples=n) to get every one.

        Keyword options (runtime/request.py declares each, with its bounds):
        scheduler ("ddpm", the original's; "unipc", "dpm++", ...) with scheduler_options (diffusers config keys);
        seed; latents / noise to replay a run exactly; preset ("fast", "turbo": runtime/presets.py; options given
        explicitly override the preset's).
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
        request = _request(_one_prompt(prompt), steps=steps, guidance=guidance, samples=samples, **options)
        return self.runner.clips(request, progress=not disable_progress)[0]

    def generate_for_batch(self, prompts: Sequence[str], steps: int = STEPS, guidance: float = GUIDANCE,
                           samples: int = SAMPLES, batch_size: int = 8, disable_progress: bool = True,
                           **options: Unpack[RequestOptions]) -> list[np.ndarray] | list[list[np.ndarray]]:
        """int16 waveforms: a flat list with samples == 1, else one list of `samples` waveforms per prompt.

        Row r (prompt-major) draws from its own random stream (runtime/noise.py), so `batch_size` never changes
        the audio. `latents` / `noise` cover all prompts x samples rows; they are split along with the prompts.
        Options as for `generate`; an edit (audio) runs all rows in one call, whatever batch_size."""
        request = _request(prompts, steps=steps, guidance=guidance, samples=samples, **options)
        batch_size = check_value("batch_size", batch_size, low=1)
        clips = self.runner.clips(request, progress=not disable_progress, batch_size=batch_size)
        n = request.samples
        return clips if n == 1 else [clips[i : i + n] for i in range(0, len(clips), n)]

    def extend(self, prompt: str, audio: AudioLike, seconds: float, steps: int = STEPS, guidance: float = GUIDANCE,
               disable_progress: bool = True, **options: Unpack[RequestOptions]) -> np.ndarray:
        """int16: the input unchanged (but for a 50 ms crossfade at its very end), followed by `seconds` of audio
        that continue it (windows that keep the input's last 2.56 s as known frames; see generate_stream)."""
        request = _request(_one_prompt(prompt), steps=steps, guidance=guidance, audio=audio, extend=seconds,
                           **options)
        return self.runner.clips(request, progress=not disable_progress)[0]

    def generate_stream(self, prompt: str, duration: float | None = None, steps: int = STEPS,
                        guidance: float = GUIDANCE, disable_progress: bool = True,
                        **options: Unpack[RequestOptions]) -> Iterator[np.ndarray]:
        """int16 segments of one long clip, each as soon as its window is done (long-form), adding up to exactly
        round(duration * 16000) samples; with `audio` and `extend`, the input first, then `extend` seconds that
        continue it. Windows are 10.24 s (Tango's training length; less if an export accepts less), each keeping
        the previous window's last 2.56 s as known frames, joined by a crossfade; memory stays that of one window."""
        request = _request(_one_prompt(prompt), duration=duration, steps=steps, guidance=guidance, **options)
        prepared = self.runner.prepare(request, stream=True)
        for segments in self.runner.segments(prepared, progress=not disable_progress):
            yield segments[0]
