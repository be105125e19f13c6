"""The diffusion loop, once, in numpy: text -> embeddings -> guided denoising -> mel -> waveform.

It talks to the four networks only through the Component interface, so any backend (torch, onnxruntime,
tensorrt), mixed per component, runs the same loop. Numerics follow the original AudioDiffusion.inference:
CFG rows ordered [uncond..., cond...], `samples` copies of each prompt adjacent (p0, p0, p1, p1, ...),
noise = uncond + g * (cond - uncond) with the UNet run once on the doubled batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .backends.base import Component
from .checks import assert_finite
from .config import PipelineConfig
from .errors import BackendError, InputError, Interrupted
from .feature_cache import FeatureCache
from .guidance import UNetPlan
from .mel import MelFrontEnd
from .noise import NoiseSource
from .schedulers import Scheduler
from .schedulers.base import first_step
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


@dataclass
class Edit:
    """The one masked loop's two optional inputs; audio in, variations, inpainting, extension, long-form and loops
    are each one of them or both.

    source: clean latents (rows, C, frames, bins) in the UNet's space (scale_factor x the VAE posterior mean).
    strength: in (0, 1]. Below 1, sampling starts at diffusers' image-to-image step (`first_step`) from the source
        noised there with the sampler's `add_noise`; at 1 it starts from pure noise.
    known: bool (rows or 1, frames), True where the latent frames are the source's: after every step those frames
        are replaced by the source noised to the next step's level (latent-diffusion / AudioLDM inpainting), and
        at the end they are the source itself.
    Random draws per row, in order: the initial tensor, then per step the sampler's noise (if it takes one) and,
    with `known`, one more for re-noising (none after the last step). Recorded `noise=` cannot replay an edit."""

    source: np.ndarray
    strength: float = 1.0
    known: np.ndarray | None = None

    def check(self, shape: tuple[int, ...], noise: NoiseSource) -> None:
        if self.source.shape != shape:
            raise InputError(f"edit source latents have shape {self.source.shape}, the run needs {shape}")
        if self.known is not None and (self.known.dtype != bool or self.known.ndim != 2
                                       or self.known.shape[0] not in (1, shape[0]) or self.known.shape[1] != shape[2]):
            raise InputError(f"known frames must be a bool array (1 or {shape[0]}, {shape[2]}), got "
                             f"{self.known.dtype} {self.known.shape}")
        if noise.noise is not None:
            raise InputError("recorded noise= cannot replay an edit (it draws re-noising tensors): pass a seed")
        first_step(1, self.strength)  # strength in (0, 1]

    def frames_mask(self) -> np.ndarray:
        """`known` broadcast over (rows, C, frames, bins)."""
        return self.known[:, None, :, None]

    def keep_known(self, latents: np.ndarray, scheduler: Scheduler, index: int, noise: NoiseSource,
                   shape: tuple[int, ...]) -> np.ndarray:
        """Known frames set to the source at the level step `index` starts from (the source itself at the end)."""
        last = index >= len(scheduler.timesteps)
        target = self.source if last else scheduler.add_noise(self.source, noise.step(0, shape), index)
        return np.where(self.frames_mask(), target, latents)

    def select(self, keep: np.ndarray) -> Edit:
        known = self.known if self.known is None or len(self.known) == 1 else self.known[keep]
        return Edit(self.source[keep], self.strength, known)


class LiveRows:
    """Which rows of a call are still wanted, asked at every step boundary of the loop.

    `wanted()` gives one bool per row of the call, in its row order (the server: False once a request's client
    has gone or its deadline has passed). A row that turns False is dropped from the batch before the next UNet
    call, so a withdrawn request stops costing UNet time while its batch mates go on; when no row is left the
    call raises Interrupted. `kept` holds the call's indices of the rows still running."""

    def __init__(self, wanted: Callable[[], Sequence[bool]], rows: int):
        self.wanted = wanted
        self.kept = np.arange(rows)

    def drop(self) -> np.ndarray | None:
        """Positions in the current batch to keep, or None when every running row is still wanted."""
        alive = np.asarray(self.wanted(), dtype=bool)[self.kept]
        if alive.all():
            return None
        if not alive.any():
            raise Interrupted(f"all {len(self.kept)} remaining rows were withdrawn")
        self.kept = self.kept[alive]
        return np.flatnonzero(alive)


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

    def check_latent_frames(self, frames: int) -> None:
        """Refuse a clip length the exported graphs were not declared for, in seconds and with the fix."""
        declared = self.ranges.get("latent_frames")
        if declared is None or declared.check(frames) is None:
            return
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
        live: LiveRows | None = None,
        edit: Edit | None = None,
        plan: UNetPlan | None = None,
    ) -> np.ndarray:
        """Run the guided sampling loop and return the final latents (N, C, frames, bins); with `live`, only of
        the rows still wanted (`live.kept`). With `edit`, the one masked loop: it may start part-way from the
        edit's source and keeps its known frames (see Edit). With `plan`, steps outside its guidance interval run
        the UNet on the conditional rows alone."""
        rows = len(text.embeddings) // (2 if text.guided else 1)
        shape = self.config.latent_shape(rows, latent_frames)
        scheduler.set_timesteps(steps)
        noise.check(shape, scheduler.noise_count(), scheduler.name)
        if edit is not None:
            edit.check(shape, noise)
        start, latents = self._start(scheduler, noise.initial(shape), steps, edit)
        scale, drawn, plan = np.float32(guidance), 0, plan or UNetPlan()
        indices = range(start, len(scheduler.timesteps))
        calls = plan.calls(scheduler, indices, text.guided)
        cache = FeatureCache() if any(kind == "shallow" for kind, _ in calls) else None
        for step, index in enumerate(tqdm(indices, disable=not progress, desc="denoising", leave=False)):
            if live is not None and (keep := live.drop()) is not None:
                latents, text, noise = latents[keep], text.select(keep), noise.select(keep)
                edit = edit.select(keep) if edit is not None else None
                scheduler.select_rows(keep)
                if cache is not None:
                    cache.select(keep)
                shape = (len(keep), *shape[1:])
            model_input = scheduler.scale_model_input(latents, index)
            kind, guided = calls[step]
            output = self._model_output(text, model_input, scheduler.timesteps[index], guided, scale, cache,
                                        kind == "shallow")
            step_noise = None
            if scheduler.needs_noise(index):
                step_noise, drawn = noise.step(drawn, shape), drawn + 1
            latents = scheduler.step(output, index, latents, step_noise)
            if edit is not None and edit.known is not None:
                latents = edit.keep_known(latents, scheduler, index + 1, noise, shape)
        return assert_finite(latents, "denoising loop (final latents)")

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

    @staticmethod
    def _start(scheduler: Scheduler, initial: np.ndarray, steps: int, edit: Edit | None) -> tuple[int, np.ndarray]:
        """(first step, latents there): pure noise at step 0, or for an edit of strength < 1 the source noised
        to the level of diffusers' image-to-image start step; known frames start as the noised source."""
        if edit is None:
            return 0, initial * np.float32(scheduler.init_noise_sigma)
        if edit.strength < 1:
            start = first_step(steps, edit.strength)
            return start, scheduler.add_noise(edit.source, initial, start)
        latents = initial * np.float32(scheduler.init_noise_sigma)
        if edit.known is not None:
            latents = np.where(edit.frames_mask(), scheduler.add_noise(edit.source, initial, 0), latents)
        return 0, latents

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latents -> mel (N, 1, frames, bins) -> float waveform (N, samples)."""
        mel = self.components[VAE_DECODER](latents=latents)
        return self.components[VOCODER](mel=np.ascontiguousarray(mel[:, 0]))

    def __call__(
        self,
        prompts: Sequence[str],
        scheduler: Scheduler,
        steps: int,
        guidance: float,
        samples: int,
        noise: NoiseSource,
        progress: bool = False,
        latent_frames: int | None = None,
        live: LiveRows | None = None,
        edit: Edit | None = None,
        plan: UNetPlan | None = None,
    ) -> np.ndarray:
        """Float waveforms (len(prompts) * samples, num_samples), prompt-major: p0s0, p0s1, p1s0, ...; with `live`,
        of the rows in `live.kept` only; with `edit`, through the masked loop; with `plan`, its UNet work."""
        text = self.encode_text(prompts, samples, guided=guidance > 1.0)
        latents = self.denoise(text, scheduler, steps, guidance, noise, progress, latent_frames, live, edit, plan)
        return self.decode(latents)
