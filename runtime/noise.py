"""Where the loop's random tensors come from, in one documented order, so any run can be replayed exactly.

Per denoising call (one batch of prompts x samples):
  1. initial latents: rng.standard_normal((N, C, frames, bins), float32), times the scheduler's init_noise_sigma;
  2. for each step whose scheduler draws noise (DDPM: every step with t > 0, the last one included), in step
     order: rng.standard_normal(same shape, float32).
`latents=` replaces draw 1 and `noise=` (one array per drawing step) replaces draws 2; the rest still come from
the generator, so passing both replays a run without touching it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError


def _as_float32(array, what: str) -> np.ndarray:
    try:
        return np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be a float array: {exc}") from None


class NoiseSource:
    """Initial latents and per-step noise: from the generator, or from arrays the caller recorded."""

    def __init__(
        self,
        rng: np.random.Generator,
        latents: np.ndarray | None = None,
        noise: Sequence[np.ndarray] | np.ndarray | None = None,
    ):
        self.rng = rng
        self.latents = None if latents is None else _as_float32(latents, "latents")
        self.noise = None if noise is None else [_as_float32(n, f"noise[{i}]") for i, n in enumerate(noise)]

    def check(self, shape: tuple[int, ...], noise_count: int, scheduler: str) -> None:
        """Validate user-given arrays against the run before any compute is spent."""
        if self.latents is not None and self.latents.shape != shape:
            raise InputError(f"latents has shape {self.latents.shape}, expected {shape} (samples x prompts, C, T, F)")
        if self.noise is None:
            return
        if noise_count == 0:
            raise InputError(f"scheduler {scheduler!r} is deterministic and draws no noise; do not pass noise=")
        if len(self.noise) != noise_count:
            raise InputError(f"noise has {len(self.noise)} arrays; {scheduler} with these steps needs {noise_count}")
        for i, array in enumerate(self.noise):
            if array.shape != shape:
                raise InputError(f"noise[{i}] has shape {array.shape}, expected {shape}")

    def rows(self, start: int, stop: int) -> NoiseSource:
        """The same source restricted to latent rows [start, stop): one batch of generate_for_batch."""
        latents = None if self.latents is None else self.latents[start:stop]
        noise = None if self.noise is None else [n[start:stop] for n in self.noise]
        return NoiseSource(self.rng, latents, noise)

    def initial(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.latents if self.latents is not None else self.rng.standard_normal(shape, dtype=np.float32)

    def step(self, count: int, shape: tuple[int, ...]) -> np.ndarray:
        """The `count`-th noise tensor of this run (0-based among drawing steps)."""
        return self.noise[count] if self.noise is not None else self.rng.standard_normal(shape, dtype=np.float32)
