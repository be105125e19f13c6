"""Loudness normalisation: a clip brought to a target integrated loudness (ITU-R BS.1770 / EBU R128, in LUFS),
under a peak ceiling, measured with pyloudnorm (the `loudness` extra).

Off by default: the original returns the model's own level. BS.1770 specifies its K-weighting at 48 kHz, so the
clip is measured after resampling to 48 kHz (soxr): a 16 kHz design of the same filters departs from them near
8 kHz, where much of a generated clip's energy can lie (1 LU on the tiny test model). With a target, the gain is
the one that brings the clip's integrated loudness to it, lowered if needed so that the sample peak stays under
the ceiling (default -1 dBFS: a sample peak, not a true peak, which would need oversampling). What is not
measurably sound is left alone: a clip shorter than one 400 ms gating block, or whose integrated loudness is below
BS.1770's absolute gate (-70 LUFS: silence and near-silence) gets no gain, so silence is never blown up into
noise. The gain applied (dB, or None where none could be) is returned for the clip's settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import BackendError

ABSOLUTE_GATE_LUFS = -70.0  # BS.1770: blocks below this are silence
BLOCK_S = 0.4  # BS.1770's gating block
DEFAULT_PEAK_DBFS = -1.0


@dataclass(frozen=True)
class Leveled:
    wave: np.ndarray  # float32, the clip at its new level
    gain_db: float | None  # the gain applied; None: not measurable (silence, or shorter than one block)
    loudness_lufs: float | None  # the clip's integrated loudness before


MEASURE_RATE = 48000  # BS.1770 specifies its K-weighting filters at 48 kHz: other rates are resampled to it


def meter(rate: int):
    try:
        import pyloudnorm
    except ImportError as exc:
        raise BackendError(f"loudness normalisation needs pyloudnorm ({exc}): pip install 'tango-rt[loudness]'") \
            from None
    return pyloudnorm.Meter(rate, block_size=BLOCK_S)


def normalize(wave: np.ndarray, rate: int, target_lufs: float, peak_dbfs: float = DEFAULT_PEAK_DBFS) -> Leveled:
    """`wave` (float, full scale 1.0) at `target_lufs`, its sample peak at most `peak_dbfs`."""
    wave = np.asarray(wave, dtype=np.float32)
    if len(wave) < BLOCK_S * rate:
        return Leveled(wave, None, None)
    import soxr

    measured = soxr.resample(wave.astype(np.float64), rate, MEASURE_RATE, quality="HQ")  # not the filters at 16 kHz
    loudness = float(meter(MEASURE_RATE).integrated_loudness(measured))
    if not math.isfinite(loudness) or loudness < ABSOLUTE_GATE_LUFS:
        return Leveled(wave, None, None if not math.isfinite(loudness) else loudness)
    gain_db = target_lufs - loudness
    peak = float(np.abs(wave).max())
    if peak > 0:
        gain_db = min(gain_db, peak_dbfs - 20 * math.log10(peak))
    return Leveled((wave * np.float32(10 ** (gain_db / 20))).astype(np.float32), gain_db, loudness)
