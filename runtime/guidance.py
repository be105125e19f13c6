"""Classifier-free guidance only where it helps: a guidance interval in noise levels (Kynkaenniemi et al. 2024,
"Applying guidance in a limited interval improves sample and distribution quality in diffusion models").

They found guidance harmful at high noise (it pushes samples toward a few modes and costs diversity) and nearly
useless at low noise (the sample's content is settled); outside the interval a step runs the UNet on the
conditional rows alone, half the batch. The interval is stated in sigma, the noise level every sampler shares
(Scheduler.sigma: sigma(t) = sqrt((1 - alpha_bar_t) / alpha_bar_t), 14.6 at the first step of Tango's schedule,
0.029 at t = 0), so it means the same at any step count and with any sampler: guided where low < sigma <= high, as
the paper writes it. Off by default (every step guided, the original's behaviour).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InputError
from .schedulers import Scheduler
from .schedulers.config import MAX_SIGMA


def is_guided(guidance: float) -> bool:
    """Whether a run uses classifier-free guidance: a scale above 1 (at 1 the guided output is the conditional
    one, so the original skips the unconditional rows; below 1 it does too)."""
    return guidance > 1.0


@dataclass(frozen=True)
class GuidanceInterval:
    """Guided steps are those whose sigma lies in (low, high]."""

    low: float
    high: float

    @classmethod
    def of(cls, value: tuple[float, float] | GuidanceInterval | None) -> GuidanceInterval | None:
        """None (guidance at every step), or a (low, high) pair of numbers in [0, MAX_SIGMA] (their type and
        range are the request's check, runtime/request.py) whose low lies below its high."""
        if value is None or isinstance(value, GuidanceInterval):
            return value
        low, high = float(value[0]), float(value[1])
        if not low < high:
            raise InputError(f"guidance_interval ({low:g}, {high:g}) must have 0 <= low < high <= {MAX_SIGMA:g} "
                             "(sigma; Tango's schedule runs from 14.6 down to 0.029)")
        return cls(low, high)

    def applies(self, sigma: float) -> bool:
        return self.low < sigma <= self.high

    def plan(self, scheduler: Scheduler, indices: range) -> list[bool]:
        """Which of the run's steps are guided; refuses an interval that holds none of them (it would silently
        turn guidance off: a mistake, not a setting)."""
        sigmas = [scheduler.sigma(i) for i in indices]
        guided = [self.applies(s) for s in sigmas]
        if sigmas and not any(guided):
            raise InputError(f"guidance_interval ({self.low:g}, {self.high:g}] holds none of this run's noise levels "
                             f"({max(sigmas):.3g} down to {min(sigmas):.3g}): no step would be guided")
        return guided


def guided_steps(interval: GuidanceInterval | None, scheduler: Scheduler, indices: range, guided: bool) -> list[bool]:
    """Per step of a run, whether it runs guided: never without guidance, always without an interval."""
    if not guided:
        return [False] * len(indices)
    return [True] * len(indices) if interval is None else interval.plan(scheduler, indices)


CACHE_SCHEDULES = ("uniform", "center")
MAX_CACHE_INTERVAL = 50


@dataclass(frozen=True)
class UNetPlan:
    """How each step of a run calls the UNet, beyond the sampler: guided or on the conditional rows alone
    (`guidance_interval`), the full network or its shallow branch on a cached deep feature (`cache_interval`,
    `cache_schedule`; runtime/feature_cache.py). One object through the API, the editor and the loop; the
    default is the original's every-step guided full UNet."""

    guidance_interval: GuidanceInterval | None = None
    cache_interval: int = 1
    cache_schedule: str = "uniform"

    @classmethod
    def of(cls, guidance_interval: Sequence[float] | None = None, cache_interval: int = 1,
           cache_schedule: str = "uniform") -> UNetPlan:
        """A plan checked as a request's options are (runtime/request.py): for studies and tests that build one
        without a request."""
        from .request import GenerationRequest

        return GenerationRequest.build([""], guidance_interval=guidance_interval, cache_interval=cache_interval,
                                       cache_schedule=cache_schedule).plan

    def calls(self, scheduler: Scheduler, indices: range, guided: bool) -> list[tuple[str, bool]]:
        """Per step of a run, its UNet call: ("full" | "shallow", guided?). What the loop runs and what FLOP counts
        add up (runtime/flops.py), from one place."""
        from .feature_cache import full_steps, step_kinds

        guidance = guided_steps(self.guidance_interval, scheduler, indices, guided)
        kinds = step_kinds(guidance, full_steps(len(indices), self.cache_interval, self.cache_schedule))
        return list(zip(kinds, guidance, strict=True))
