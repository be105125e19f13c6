"""The diffusion loop, once, in numpy: text -> embeddings -> guided denoising -> mel -> waveform.

It talks to the four networks only through the Component interface, so any backend (torch, onnxruntime,
tensorrt), mixed per component, runs the same loop. Numerics follow the original AudioDiffusion.inference:
CFG rows ordered [uncond..., cond...], `samples` copies of each prompt adjacent (p0, p0, p1, p1, ...),
noise = uncond + g * (cond - uncond) with the UNet run once on the doubled batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .backends.base import Component
from .checks import assert_finite
from .config import PipelineConfig
from .editing.masked import Edit
from .errors import BackendError, InputError
from .feature_cache import FeatureCache
from .guidance import UNetPlan, is_guided
from .mel import MelFrontEnd
from .noise import NoiseSource
from .rows import RowSet
from .schedulers import Scheduler
from .specs import NOISE_PRED, TEXT_ENCODER, UNET, UNET_SHALLOW, VAE_DECODER, VAE_ENCODER, VOCODER, DimRange
from .tokenizer import PromptTokenizer


@dataclass
class TextConditioning:
    """UNet conditioning for one batch: embeddings and bool mask, CFG-doubled when guidance > 1."""

    embeddings: np.ndarray  # (rows, text_len, hidden) float32
    mask: np.ndarray  # (rows, text_len) bool
    guided: bool

    def select(self, keep: np.ndarray) -> TextConditioning:
        """The conditioning of the clips `keep` (indices), both CFG halves."""
        rows = np.concatenate([keep, len(self.embeddings) // 2 + keep]) if self.guided else keep
        return TextConditioning(self.embeddings[rows], self.mask[rows], self.guided)

    @cached_property
    def conditional(self) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings, mask) of the conditional rows alone: an unguided step's. Made once per call, so a backend
        that skips re-copying an unchanged input array sees the same one every step."""
        if not self.guided:
            return self.embeddings, self.mask
        half = len(self.embeddings) // 2
        return np.ascontiguousarray(self.embeddings[half:]), np.ascontiguousarray(self.mask[half:])


@dataclass(frozen=True)
class Sampling:
    """How every denoising run of one request samples: its sampler (reset by each run), steps, guidance scale and
    UNet plan, and whether runs show a progress bar. Windows and a loop's two passes reuse it."""

    scheduler: Scheduler
    steps: int
    guidance: float
    plan: UNetPlan = field(default_factory=UNetPlan)
    progress: bool = False

    @property
    def guided(self) -> bool:
        return is_guided(self.guidance)


class TangoPipeline:
    """Tokenizer + the networks + scheduler config: everything one generation needs; the networks only editing
    needs (the VAE encoder) and the audio front end are loaded on first use, through `loader`."""

    def __init__(
        self,
        components: Mapping[str, Component],
        tokenizer: PromptTokenizer,
        config: PipelineConfig,
        scheduler_config: dict,
        ranges: Mapping[str, DimRange] | None = None,
        loader: Any = None,
    ):
        self.components = dict(components)
        self.tokenizer = tokenizer
        self.config = config
        self.scheduler_config = scheduler_config
        self.ranges = dict(ranges or {})  # the shapes an exported folder was declared for; empty: any
        # engines built for a fixed text length get prompts padded up to it
        self.min_text_len = self.ranges["text_len"].min if "text_len" in self.ranges else 1
        self.loader = loader  # runtime.loader.ComponentLoader: .load([name]) and .frontend()
        self.wrappers: list[Callable[[str, Component], Component]] = []  # applied to networks loaded later
        self._frontend: MelFrontEnd | None = None

    def component(self, name: str) -> Component:
        """A network by name, loaded now if it was not loaded with the model (the VAE encoder)."""
        if name not in self.components:
            if self.loader is None:
                raise BackendError(f"{name} is not loaded and this pipeline has no loader for it")
            component = self.loader.load([name], self.components)[name]
            if name == UNET_SHALLOW and UNET in self.components:  # checked for NaN / Inf as the UNet is
                component.check_finite = self.components[UNET].check_finite
            for wrap in self.wrappers:
                component = wrap(name, component)
            self.components[name] = component
        return self.components[name]

    def frontend(self) -> MelFrontEnd:
        """The audio -> log-mel front end (runtime/mel.py), read on first use."""
        if self._frontend is None:
            if self.loader is None:
                raise BackendError("this pipeline has no audio front end")
            self._frontend = self.loader.frontend()
        return self._frontend

    def encode_mel(self, mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log-mel (rows, mel_frames, bins) -> the VAE posterior's (mean, log-variance), each (rows, C, frames,
        bins), not scaled: latents are scale_factor x a draw from it."""
        mean, logvar = self.component(VAE_ENCODER)(mel=np.ascontiguousarray(mel[:, None], dtype=np.float32))
        return mean, logvar

    def fixed_frames(self) -> int | None:
        """The one clip length (latent frames) a model of fixed shapes runs (static engines), else None."""
        declared = self.ranges.get("latent_frames")
        return declared.min if declared is not None and declared.min == declared.max else None

    def check_latent_frames(self, frames: int) -> None:
        """Refuse a clip length the exported graphs were not declared for, in seconds and with the fix."""
        declared = self.ranges.get("latent_frames")
        if declared is None or declared.check(frames) is None:
            return
        if declared.min == declared.max:
            raise InputError(
                f"duration {self.config.duration(frames):.2f} s ({frames} latent frames): this model runs only "
                f"{self.config.duration(declared.min):.2f} s ({declared.min} frames; engines of one fixed length); "
                "ask for that length, or build engines with a range: tango-rt build without --static")
        low, high = self.config.duration(declared.min), self.config.duration(declared.max)
        raise InputError(
            f"duration {self.config.duration(frames):.2f} s ({frames} latent frames) is outside what this exported "
            f"model accepts: {low:.2f} s to {high:.2f} s in steps of {self.config.duration(declared.multiple_of):.2f} "
            "s; re-export with a wider range: tango-rt export --max-duration SECONDS"
        )

    def encode_text(self, prompts: Sequence[str], samples: int, guided: bool) -> TextConditioning:
        """T5 embeddings; under CFG the "" prompt is padded to the prompts' length and goes first."""
        ids, mask = self.tokenizer(prompts, min_length=self.min_text_len)
        if guided:
            uncond_ids, uncond_mask = self.tokenizer([""] * len(prompts), length=ids.shape[1])
            ids, mask = np.concatenate([uncond_ids, ids]), np.concatenate([uncond_mask, mask])
        embeddings = self.components[TEXT_ENCODER](input_ids=ids, attention_mask=mask)
        return TextConditioning(np.repeat(embeddings, samples, axis=0), np.repeat(mask == 1, samples, axis=0), guided)

    def denoise(
        self,
        text: TextConditioning,
        scheduler: Scheduler,
        steps: int,
        guidance: float,
        noise: NoiseSource,
        progress: bool = False,
        latent_frames: int | None = None,
        rows: RowSet | None = None,
        edit: Edit | None = None,
        plan: UNetPlan | None = None,
    ) -> np.ndarray:
        """Run the guided sampling loop and return the final latents (N, C, frames, bins); with `rows`, only of
        the rows still wanted (`rows.kept`: the others leave between steps). With `edit`, the one masked loop: it
        may start part-way from the edit's source and keeps its known frames (runtime/editing/masked.py). With
        `plan`, steps outside its guidance interval run the UNet on the conditional rows alone, and cached steps
        its shallow branch."""
        shape = self.config.latent_shape(len(text.embeddings) // (2 if text.guided else 1), latent_frames)
        scheduler.set_timesteps(steps)
        noise.check(shape, scheduler.noise_count(), scheduler.name)
        if edit is not None:
            edit.check(shape, noise)
        initial = noise.initial(shape)
        start, latents = (0, initial * np.float32(scheduler.init_noise_sigma)) if edit is None else \
            edit.start(scheduler, initial, steps)
        indices = range(start, len(scheduler.timesteps))
        calls = (plan or UNetPlan()).calls(scheduler, indices, text.guided)
        cache = FeatureCache() if any(kind == "shallow" for kind, _ in calls) else None
        state = RunState(latents, text, noise, edit, scheduler, cache)
        scale, drawn = np.float32(guidance), 0
        for step, index in enumerate(tqdm(indices, disable=not progress, desc="denoising", leave=False)):
            if rows is not None and (keep := rows.withdraw()) is not None:
                state.select(keep)
            model_input = scheduler.scale_model_input(state.latents, index)
            kind, guided = calls[step]
            output = self._model_output(state.text, model_input, scheduler.timesteps[index], guided, scale,
                                        state.cache, kind == "shallow")
            step_noise = None
            if scheduler.needs_noise(index):
                step_noise, drawn = state.noise.step(drawn, state.latents.shape), drawn + 1
            state.latents = scheduler.step(output, index, state.latents, step_noise)
            if state.edit is not None:
                state.latents = state.edit.keep_known(state.latents, scheduler, index + 1, state.noise)
        return assert_finite(state.latents, "denoising loop (final latents)")

    def sample(self, text: TextConditioning, sampling: Sampling, noise: NoiseSource, latent_frames: int | None = None,
               rows: RowSet | None = None, edit: Edit | None = None) -> np.ndarray:
        """`denoise` with a request's sampling."""
        return self.denoise(text, sampling.scheduler, sampling.steps, sampling.guidance, noise, sampling.progress,
                            latent_frames, rows, edit, sampling.plan)

    def _model_output(self, text: TextConditioning, model_input: np.ndarray, timestep: float, guided: bool,
                      scale: np.float32, cache: FeatureCache | None = None, shallow: bool = False) -> np.ndarray:
        """One UNet call: guided (the CFG batch, uncond + g (cond - uncond)) or on the conditional rows alone; the
        full network (its deep feature kept in `cache`) or, when `shallow`, its shallow branch on the cached one."""
        embeddings, mask = (text.embeddings, text.mask) if guided else text.conditional
        sample = np.concatenate([model_input, model_input]) if guided else model_input
        feeds = dict(sample=sample, timestep=np.full(len(sample), timestep, dtype=np.float32),
                     encoder_hidden_states=embeddings, encoder_attention_mask=mask)
        if shallow:
            output = self.component(UNET_SHALLOW)(**feeds, deep_feature=cache.rows(guided))
        elif cache is None:  # the deep feature stays where it was made (a GPU does not copy it back)
            output = self.components[UNET](outputs=[NOISE_PRED], **feeds)
        else:
            output, feature = self.components[UNET](**feeds)
            cache.store(feature, guided)
        if not guided:
            return output
        uncond, cond = np.split(output, 2)
        return uncond + scale * (cond - uncond)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latents -> mel (N, 1, frames, bins) -> float waveform (N, samples)."""
        mel = self.components[VAE_DECODER](latents=latents)
        return self.components[VOCODER](mel=np.ascontiguousarray(mel[:, 0]))

    def __call__(self, prompts: Sequence[str], sampling: Sampling, samples: int, noise: NoiseSource,
                 latent_frames: int | None = None, rows: RowSet | None = None) -> np.ndarray:
        """Float waveforms (len(prompts) * samples, num_samples), prompt-major: p0s0, p0s1, p1s0, ...; with `rows`,
        of the rows in `rows.kept` only: text to audio, the original's path."""
        text = self.encode_text(prompts, samples, sampling.guided)
        return self.decode(self.sample(text, sampling, noise, latent_frames, rows))


@dataclass
class RunState:
    """Every per-row state of one denoising run, so that rows withdrawn between two steps leave all of it at once
    (runtime/rows.py): the latents, the text conditioning (both CFG halves), the noise streams, the edit's source
    and known frames, a multistep sampler's history and the cached deep feature."""

    latents: np.ndarray
    text: TextConditioning
    noise: NoiseSource
    edit: Edit | None
    scheduler: Scheduler
    cache: FeatureCache | None

    def select(self, keep: np.ndarray) -> None:
        self.latents, self.text, self.noise = self.latents[keep], self.text.select(keep), self.noise.select(keep)
        self.edit = self.edit.select(keep) if self.edit is not None else None
        self.scheduler.select_rows(keep)
        if self.cache is not None:
            self.cache.select(keep)
