"""The clips of one call and which of them are still wanted: the one row set every per-row state selects through.

A call's rows are its clips, prompt-major (p0s0, p0s1, p1s0, ...), each drawing only from its own random stream.
The server withdraws a row when its request's client has gone or its deadline has passed; the run then drops it
between two UNet steps (or two windows), so it stops costing UNet time while its batch mates go on. Every state
that holds one entry per row follows the same `keep` positions: the latents, the text conditioning, the edit's
source and known frames, the noise streams, the cached deep feature, a multistep sampler's history
(runtime/pipeline.py: `RunState.select`), and between windows the latent tails and the audio held for the next
crossfade (runtime/editing/runs.py, runtime/editing/stitch.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .errors import Interrupted
from .noise import NoiseSource


class RowSet:
    """The rows of one call: their prompts, their random streams, and `kept`, the call's indices of the rows still
    running. `wanted()` (None: always all) gives one bool per row of the call, in its order; it is asked at every
    step boundary."""

    def __init__(self, prompts: Sequence[str], noise: NoiseSource,
                 wanted: Callable[[], Sequence[bool]] | None = None):
        self.prompts = list(prompts)
        self.noise = noise
        self.wanted = wanted
        self.kept = np.arange(len(self.prompts))

    def __len__(self) -> int:
        return len(self.prompts)

    def withdraw(self) -> np.ndarray | None:
        """Positions, among the rows running now, of those to keep; None when every running row is still wanted.
        Raises Interrupted when none is left."""
        if self.wanted is None:
            return None
        alive = np.asarray(self.wanted(), dtype=bool)[self.kept]
        if alive.all():
            return None
        if not alive.any():
            raise Interrupted(f"all {len(self.kept)} remaining rows were withdrawn")
        self.kept = self.kept[alive]
        return np.flatnonzero(alive)

    def since(self, earlier: np.ndarray) -> np.ndarray:
        """Positions in `earlier` (a past `kept`) of the rows kept now: how a state saved then follows."""
        return np.searchsorted(earlier, self.kept)

    def running(self) -> tuple[list[str], NoiseSource]:
        """The prompts and random streams of the rows still running."""
        return [self.prompts[i] for i in self.kept], self.noise.select(self.kept)
