"""TensorRT optimization profiles, computed from the component declarations.

Pure functions (no TensorRT, no GPU): `tango-rt build` and the TensorRT backend both call them, and the unit
tests check them on any machine.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..runtime.config import PipelineConfig
from ..runtime.errors import InputError
from ..runtime.specs import ComponentSpec, DimRange, dims, ranges_between

Shape = tuple[int, ...]


def profile_shapes(spec: ComponentSpec, ranges: Mapping[str, DimRange]) -> dict[str, tuple[Shape, Shape, Shape]]:
    """(min, opt, max) shape of every input, from the declared range of each symbolic dimension."""
    pick = {
        "min": {k: r.min for k, r in ranges.items()},
        "opt": {k: r.opt for k, r in ranges.items()},
        "max": {k: r.max for k, r in ranges.items()},
    }
    return {t.name: (t.resolve(pick["min"]), t.resolve(pick["opt"]), t.resolve(pick["max"])) for t in spec.inputs}


def static_ranges(config: PipelineConfig, batch: int, text_len: int, latent_frames: int | None = None):
    """Ranges with min = opt = max: one shape per engine, which CUDA graphs need.

    The pipeline pads prompts up to the smallest supported text length, so a static text length works for any
    prompt up to that many tokens (padded positions are masked out of cross-attention)."""
    frames = latent_frames or config.latent_frames
    if frames % config.unet_downsample:
        raise InputError(f"latent frames {frames} must be a multiple of {config.unet_downsample}")
    fixed = dims(config, batch, text_len, frames)
    return ranges_between(fixed, fixed, fixed)
