"""Numeric guards at component boundaries: NaN or Inf must stop generation, never reach the user as audio."""

from __future__ import annotations

import os

import numpy as np

from .errors import NumericsError

DEBUG_ENV = "TANGO_RT_DEBUG"


def debug_enabled() -> bool:
    """Debug mode (TANGO_RT_DEBUG=1): every UNet step is checked, not only the final latents."""
    return os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def assert_finite(array: np.ndarray, where: str) -> np.ndarray:
    if not np.isfinite(array).all():
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        raise NumericsError(
            f"{where} produced {nan} NaN and {inf} Inf values out of {array.size}. In FP16 this is an overflow: "
            "keep this component in FP32 (precision policy), or check the weights for NaN."
        )
    return array
