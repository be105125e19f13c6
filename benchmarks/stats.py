"""Summary statistics of timing samples: one definition used by every benchmark and report."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method), q in [0, 100]."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(samples: Sequence[float]) -> dict:
    """Raw samples plus mean / median / p95 / min / max / stdev, all in the samples' unit (seconds)."""
    samples = [float(s) for s in samples]
    if not samples:
        return {"samples": [], "n": 0}
    mean = sum(samples) / len(samples)
    variance = sum((s - mean) ** 2 for s in samples) / (len(samples) - 1) if len(samples) > 1 else 0.0
    return {
        "samples": samples,
        "n": len(samples),
        "mean": mean,
        "median": percentile(samples, 50),
        "p95": percentile(samples, 95),
        "min": min(samples),
        "max": max(samples),
        "stdev": math.sqrt(variance),
    }


def speedup(baseline: dict, candidate: dict, key: str = "median") -> float | None:
    """How many times faster `candidate` is than `baseline` (>1: faster), from their summaries."""
    if not baseline.get("n") or not candidate.get("n") or candidate[key] <= 0:
        return None
    return baseline[key] / candidate[key]
