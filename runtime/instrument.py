"""Per-stage timing inside real generations: proxies around the tokenizer and the four components.

Used by `tango-rt bench` (per-stage medians) and the server (per-stage latency histograms)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from .pipeline import TangoPipeline
from .specs import UNET, UNET_SHALLOW

# per generation: a UNet step runs the full network ("unet_step") or, on cached steps, its shallow branch
STAGES = ("tokenize", "text_encoder", "unet_step", UNET_SHALLOW, "vae_decoder", "vocoder")


class Recorder:
    """Per-call durations per stage, and per-generation totals (a generation calls the UNet once per step)."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = defaultdict(list)
        self.per_generation: dict[str, list[float]] = defaultdict(list)
        self._current: dict[str, float] = defaultdict(float)

    def record(self, stage: str, seconds: float) -> None:
        self.calls[stage].append(seconds)
        self._current[stage] += seconds

    def end_generation(self) -> None:
        for stage in STAGES:
            self.per_generation[stage].append(self._current.get(stage, 0.0))
        self._current.clear()

    def reset(self) -> None:
        self.calls.clear()
        self.per_generation.clear()
        self._current.clear()


class Timed:
    """Times each call of `target` into `recorder` under `stage`; other attributes pass through."""

    def __init__(self, target: Callable[..., Any], recorder: Recorder, stage: str):
        self._target, self._recorder, self._stage = target, recorder, stage

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._target(*args, **kwargs)
        finally:
            self._recorder.record(self._stage, time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def instrument(pipeline: TangoPipeline, recorder: Recorder) -> None:
    """Wrap the pipeline's tokenizer and components in place, and those it loads later (the VAE encoder).
    Components return host arrays, so a GPU stage's time includes its synchronisation: these are wall-clock
    latencies as the loop sees them."""
    pipeline.tokenizer = Timed(pipeline.tokenizer, recorder, "tokenize")

    def timed(name: str, component: Any) -> Timed:
        return Timed(component, recorder, "unet_step" if name == UNET else name)

    for name in list(pipeline.components):
        pipeline.components[name] = timed(name, pipeline.components[name])
    pipeline.wrappers.append(timed)
