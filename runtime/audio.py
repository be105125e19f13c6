"""Waveform conversion and WAV output."""

from __future__ import annotations

from pathlib import Path

import numpy as np

INT16_SCALE = 32768


def to_int16(wave: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16 as the original (x * 32768, truncated toward zero), but clipped first.

    The original converts without clipping, so a sample at +1.0 wraps to -32768: the one deliberate difference.
    """
    scaled = np.asarray(wave, dtype=np.float32) * np.float32(INT16_SCALE)
    return np.clip(scaled, -INT16_SCALE, INT16_SCALE - 1).astype(np.int16)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write mono 16-bit PCM; creates the parent folder."""
    import soundfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.asarray(audio), sample_rate, subtype="PCM_16")
    return path
