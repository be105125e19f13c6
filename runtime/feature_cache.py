"""Reusing the UNet's deep features across neighbouring steps (DeepCache, Ma et al., CVPR 2024).

A full UNet call also returns its deep feature: the hidden state entering the last up block at resnet
`config.unet_cache_cut`. Between full calls, a shallow call (the `unet_shallow` network: the time embedding,
conv_in, the first down block's first pairs, the last up block from the cut on, conv_out) recomputes only the
high-resolution branch around that cached feature, since the deep features of neighbouring steps barely change.
Which steps run the full UNet:

- "uniform": every `interval`-th step, the first included;
- "center": as many full calls, placed by a power law around a centre step (CENTER_FRACTION of the run, power
  CENTER_POWER), so they are denser there and sparser toward the run's ends: DeepCache's non-uniform 1:N strategy,
  which samples its full steps the same way (the values here are ours, judged on the trained oracle:
  studies/turbo).

The sampler never knows: every step still hands it a model output, so multistep samplers keep their history as
they would. A feature computed with guidance covers both halves of the CFG batch; one computed on the conditional
rows alone (outside a guidance interval) cannot serve a guided step, which then runs the full UNet.
"""

from __future__ import annotations

import math

import numpy as np

CENTER_FRACTION = 0.3  # where full calls are densest, as a fraction of the run
CENTER_POWER = 1.4


def full_steps(count: int, interval: int, schedule: str = "uniform") -> list[bool]:
    """For each of a run's `count` steps, whether it calls the full UNet (the first always does)."""
    if interval <= 1 or count <= 1:
        return [True] * count
    if schedule == "uniform":
        return [step % interval == 0 for step in range(count)]
    calls = math.ceil(count / interval)
    centre = round(CENTER_FRACTION * (count - 1))
    ends = (-(centre ** (1 / CENTER_POWER)), (count - 1 - centre) ** (1 / CENTER_POWER))
    chosen = {0}
    for u in np.linspace(ends[0], ends[1], calls):
        chosen.add(min(count - 1, max(0, round(centre + math.copysign(abs(u) ** CENTER_POWER, u)))))
    return [step in chosen for step in range(count)]


def step_kinds(guided: list[bool], full: list[bool]) -> list[str]:
    """Per step, "full" or "shallow": a shallow step needs the last full call's feature to have its rows (a
    guided step needs a guided feature), else it runs full. What the loop does and what FLOP counts assume."""
    kinds, feature_guided = [], None
    for is_guided, is_full in zip(guided, full, strict=True):
        if is_full or feature_guided is None or (is_guided and not feature_guided):
            kinds.append("full")
            feature_guided = is_guided
        else:
            kinds.append("shallow")
    return kinds


class FeatureCache:
    """The deep feature of the last full call and whether it was guided (rows [uncond..., cond...]) or not."""

    def __init__(self) -> None:
        self.feature: np.ndarray | None = None
        self.guided = False
        self._conditional: np.ndarray | None = None  # the conditional half of a guided feature, made once

    def store(self, feature: np.ndarray, guided: bool) -> None:
        self.feature, self.guided, self._conditional = feature, guided, None

    def rows(self, guided: bool) -> np.ndarray:
        """The feature for a step: all of a guided one, or the conditional half for an unguided step. The same
        array for every step until the feature changes, so a backend that skips re-copying an unchanged input
        (TensorRT) does not upload it again."""
        if guided or not self.guided:
            return self.feature
        if self._conditional is None:
            self._conditional = np.ascontiguousarray(self.feature[len(self.feature) // 2 :])
        return self._conditional

    def select(self, keep: np.ndarray) -> None:
        """Keep the clips `keep` (indices), both CFG halves of a guided feature: rows withdrawn between steps."""
        if self.feature is None:
            return
        half = len(self.feature) // 2
        self.store(self.feature[np.concatenate([keep, half + keep]) if self.guided else keep], self.guided)
