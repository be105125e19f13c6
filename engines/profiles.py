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


# Default dynamic profiles of `tango-rt build`: narrower than the export's declared range (batch 8, 40.96 s), which
# no GPU can build (its UNet attention scores alone would be ~86 GB at the maximum). Per use: up to 4 clips per call
# (tango-rt serve's default --max-batch) and the model's own clip length (10.24 s for Tango). Widen with
# `tango-rt build --max-batch B --max-duration S` (and --max-activation-gb for a larger GPU).
ENGINE_MAX_BATCH = 4
MAX_ACTIVATION_GB = 8.0
SCORE_BYTES = 4  # attention scores are FP32 in every export: the precision policy's islands (upcast_attention)


def engine_ranges(config: PipelineConfig, declared: Mapping[str, DimRange], max_batch: int | None = None,
                  max_duration: float | None = None) -> dict[str, DimRange]:
    """Dynamic profile ranges for engines: up to `max_batch` clips and `max_duration` seconds (defaults above),
    inside what the ONNX folder was declared (and tested) for; text lengths as declared."""
    batch = ENGINE_MAX_BATCH if max_batch is None else max_batch
    seconds = config.duration() if max_duration is None else max_duration
    if batch < 1 or seconds <= 0:
        raise InputError(f"engine profile: max batch must be >= 1 and max duration > 0, got {batch} and {seconds}")
    top_frames = config.latent_frames_for(seconds)
    high = dims(config, batch, declared["text_len"].max, top_frames)
    for key, value in high.items():
        if value > declared[key].max:
            raise InputError(f"engine profile: {key} up to {value} (batch {batch}, {seconds:g} s), but the ONNX folder "
                             f"is declared for at most {declared[key].max}; re-export it wider "
                             "(tango-rt export --max-batch B --max-duration S) or build narrower engines")
    result = {}
    for key, range_ in declared.items():
        top = max(high[key], range_.min)
        result[key] = DimRange(range_.min, min(max(range_.opt, range_.min), top), top, range_.multiple_of)
    return result


def largest_activation(config: PipelineConfig, ranges: Mapping[str, DimRange]) -> tuple[str, int]:
    """(what, bytes) of the largest tensor a profile's maximum shape can make a network materialise: the attention
    scores of an unfused self-attention, (rows x heads x tokens x tokens) FP32, tokens = latent frames x bins. The
    UNet's full-resolution blocks see the CFG batch with `unet_full_res_heads` heads; the VAE decoder's mid-block
    one head over the same tokens. TensorRT has to be able to fall back to such a tactic, so a profile whose
    maximum makes it too large fails to build, after minutes."""
    tokens = ranges["latent_frames"].max * config.latent_bins
    unet = ranges["cfg_batch"].max * config.unet_full_res_heads * tokens * tokens * SCORE_BYTES
    vae = ranges["batch"].max * tokens * tokens * SCORE_BYTES
    return ("UNet self-attention scores", unet) if unet >= vae else ("VAE mid-block attention scores", vae)


def check_buildable(config: PipelineConfig, ranges: Mapping[str, DimRange], max_gb: float = MAX_ACTIVATION_GB) -> None:
    """Refuse, before TensorRT starts, a profile whose worst-case activation exceeds `max_gb`."""
    what, size = largest_activation(config, ranges)
    if size > max_gb * 2**30:
        raise InputError(
            f"engine profile too large to build: at its maximum (cfg batch {ranges['cfg_batch'].max}, "
            f"{ranges['latent_frames'].max} latent frames = {config.duration(ranges['latent_frames'].max):.2f} s) "
            f"the {what} alone are {size / 2**30:.1f} GiB (limit {max_gb:g} GiB); narrow it with "
            "tango-rt build --max-batch / --max-duration, or raise --max-activation-gb on a larger GPU")
