"""The one masked loop's input: where sampling starts and which latent frames are known.

Audio in, variations, inpainting, extension, long-form and loops are each `TangoPipeline.denoise` with an `Edit`
(runtime/pipeline.py calls its hooks); runtime/editing/runs.py makes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..noise import NoiseSource
from ..schedulers import Scheduler
from ..schedulers.base import first_step

# How known frames are noised back to the next step's level: "fresh" noise drawn at every step (latent-diffusion /
# AudioLDM inpainting) or the run's "initial" noise (diffusers' inpainting pipelines). The default is the rule
# that came closer to the true conditional distribution on the trained oracle (studies/inpaint_rule).
RENOISE_RULES = ("fresh", "initial")
RENOISE = "fresh"


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
    with `known` and the "fresh" rule, one more for re-noising (none after the last step). Recorded `noise=`
    cannot replay an edit.
    renoise: RENOISE_RULES; `initial` holds the run's initial noise for the "initial" rule (set by `start`)."""

    source: np.ndarray
    strength: float = 1.0
    known: np.ndarray | None = None
    renoise: str = RENOISE
    initial: np.ndarray | None = field(default=None, repr=False)

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
        if self.renoise not in RENOISE_RULES:
            raise InputError(f"renoise must be one of {', '.join(RENOISE_RULES)}, got {self.renoise!r}")

    def frames_mask(self) -> np.ndarray:
        """`known` broadcast over (rows, C, frames, bins)."""
        return self.known[:, None, :, None]

    def start(self, scheduler: Scheduler, initial: np.ndarray, steps: int) -> tuple[int, np.ndarray]:
        """(first step, latents there): below strength 1, the source noised to the level of diffusers'
        image-to-image start step; at 1, pure noise from step 0, with the known frames as the noised source."""
        if self.known is not None and self.renoise == "initial":
            self.initial = initial
        if self.strength < 1:
            start = first_step(steps, self.strength)
            return start, scheduler.add_noise(self.source, initial, start)
        latents = initial * np.float32(scheduler.init_noise_sigma)
        if self.known is not None:
            latents = np.where(self.frames_mask(), scheduler.add_noise(self.source, initial, 0), latents)
        return 0, latents

    def keep_known(self, latents: np.ndarray, scheduler: Scheduler, index: int, noise: NoiseSource) -> np.ndarray:
        """Known frames set to the source at the level step `index` starts from (the source itself at the end);
        the latents as they are when no frame is known (a variation)."""
        if self.known is None:
            return latents
        last = index >= len(scheduler.timesteps)
        if last:
            target = self.source
        else:
            fresh = self.initial if self.renoise == "initial" else noise.step(0, latents.shape)
            target = scheduler.add_noise(self.source, fresh, index)
        return np.where(self.frames_mask(), target, latents)

    def select(self, keep: np.ndarray) -> Edit:
        known = self.known if self.known is None or len(self.known) == 1 else self.known[keep]
        initial = None if self.initial is None else self.initial[keep]
        return Edit(self.source[keep], self.strength, known, self.renoise, initial)
