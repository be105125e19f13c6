"""Where the loop's random tensors come from: one generator per clip, so a clip's audio depends only on its own
seed, never on what it was batched with, and any run can be replayed exactly.

Each row (one clip: prompt-major, p0s0, p0s1, p1s0, ...) has its own numpy Generator. Per denoising call:
  1. initial latents: row i draws rng_i.standard_normal((C, frames, bins), float32), times the scheduler's
     init_noise_sigma;
  2. for each step whose sampler takes noise (DDPM: every step with t > 0, the last one included; dpm++sde and
     euler-a: every step), in step order: row i draws rng_i.standard_normal((C, frames, bins), float32).
`seed=s` gives the rows the generators of `np.random.SeedSequence(s).spawn(rows)` (row r: the r-th child), so
a request for n clips with seed s yields the same clips alone or inside any batch. `latents=` replaces draw 1
and `noise=` (one array per noise-taking step) replaces draws 2; the rest still come from the generators, so
passing both replays a run without touching them.
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


def row_generators(seed: int | None, rows: int) -> list[np.random.Generator]:
    """The generators of `rows` clips drawn with `seed` (None: fresh entropy)."""
    return [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(rows)]


class NoiseSource:
    """Initial latents and per-step noise: from one generator per row, or from arrays the caller recorded."""

    def __init__(
        self,
        generators: Sequence[np.random.Generator],
        latents: np.ndarray | None = None,
        noise: Sequence[np.ndarray] | np.ndarray | None = None,
    ):
        self.generators = list(generators)
        self.latents = None if latents is None else _as_float32(latents, "latents")
        self.noise = None if noise is None else [_as_float32(n, f"noise[{i}]") for i, n in enumerate(noise)]

    @classmethod
    def from_seed(cls, seed: int | None, rows: int, latents=None, noise=None) -> NoiseSource:
        return cls(row_generators(seed, rows), latents, noise)

    def check(self, shape: tuple[int, ...], noise_count: int, scheduler: str) -> None:
        """Validate user-given arrays against the run before any compute is spent."""
        if len(self.generators) != shape[0]:
            raise InputError(f"{len(self.generators)} random streams for {shape[0]} clips")
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

    def select(self, keep: np.ndarray | range) -> NoiseSource:
        """The same source restricted to the rows `keep` (indices): one batch of generate_for_batch, or the loop
        dropping withdrawn rows."""
        keep = np.asarray(keep, dtype=np.int64)
        latents = None if self.latents is None else self.latents[keep]
        noise = None if self.noise is None else [n[keep] for n in self.noise]
        return NoiseSource([self.generators[i] for i in keep], latents, noise)

    def _draw(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.stack([rng.standard_normal(shape[1:], dtype=np.float32) for rng in self.generators])

    def initial(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.latents if self.latents is not None else self._draw(shape)

    def step(self, count: int, shape: tuple[int, ...]) -> np.ndarray:
        """The `count`-th noise tensor of this run (0-based among noise-taking steps)."""
        return self.noise[count] if self.noise is not None else self._draw(shape)
