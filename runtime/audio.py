"""Waveform conversion, and 16-bit audio as files or bytes (WAV, FLAC, raw PCM)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .errors import InputError

INT16_SCALE = 32768
# format -> (soundfile container, media type); "pcm" is raw 16-bit little-endian mono samples
AUDIO_FORMATS = {"wav": ("WAV", "audio/wav"), "flac": ("FLAC", "audio/flac"), "pcm": (None, "audio/L16")}


def to_int16(wave: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16 as the original (x * 32768, truncated toward zero), but clipped first.

    The original converts without clipping, so a sample at +1.0 wraps to -32768: the one deliberate difference.
    """
    scaled = np.asarray(wave, dtype=np.float32) * np.float32(INT16_SCALE)
    return np.clip(scaled, -INT16_SCALE, INT16_SCALE - 1).astype(np.int16)


def audio_format(name: str) -> str:
    """A known format name (wav, flac, pcm), from a name or a file suffix."""
    key = name.lower().lstrip(".")
    if key not in AUDIO_FORMATS:
        raise InputError(f"unknown audio format {name!r}; choose from {sorted(AUDIO_FORMATS)}")
    return key


def wav_header(samples: int, sample_rate: int, trailer: int = 0) -> bytes:
    """The 44-byte header of a 16-bit mono PCM WAV file of `samples` samples: what a stream sends first, before
    its samples exist (the length is known up front); `trailer`: the bytes of the chunks that follow the samples
    (the settings' LIST chunk, runtime/metadata.py), counted in the RIFF size."""
    import struct

    data = 2 * samples
    return (b"RIFF" + struct.pack("<I", 36 + data + trailer) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16) + b"data" + struct.pack("<I", data))


def _open(target, mode: str, sample_rate: int, container: str, settings: dict | None):
    """A soundfile for writing 16-bit mono, its tags set from the clip's settings (runtime/metadata.py)."""
    import soundfile

    from .metadata import tags

    sound = soundfile.SoundFile(target, mode, sample_rate, 1, subtype="PCM_16", format=container)
    for name, value in (tags(settings) if settings else {}).items():
        setattr(sound, name, value)
    return sound


def encode(audio: np.ndarray, sample_rate: int, fmt: str = "wav", settings: dict | None = None) -> bytes:
    """int16 mono audio as the bytes of a WAV or FLAC file (carrying `settings` as tags), or raw PCM."""
    container = AUDIO_FORMATS[audio_format(fmt)][0]
    samples = np.asarray(audio, dtype=np.int16)
    if container is None:
        return samples.astype("<i2").tobytes()
    buffer = io.BytesIO()
    with _open(buffer, "w", sample_rate, container, settings) as sound:
        sound.write(samples)
    return buffer.getvalue()


class AudioStreamWriter:
    """16-bit mono audio written segment by segment (long-form, extension) to a WAV or FLAC file, with its settings
    as tags; soundfile writes the header's final size when the writer is closed."""

    def __init__(self, path: str | Path, sample_rate: int, settings: dict | None = None):
        self.path = Path(path)
        container = AUDIO_FORMATS[audio_format(self.path.suffix or "wav")][0]
        if container is None:
            raise InputError(f"{self.path}: streamed clips are written as .wav or .flac")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = _open(self.path, "w", sample_rate, container, settings)

    def write(self, segment: np.ndarray) -> None:
        self.file.write(np.asarray(segment, dtype=np.int16))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, settings: dict | None = None) -> Path:
    """Write 16-bit mono audio in the format the suffix names (.wav, .flac, .pcm) with its settings as tags;
    creates the parent folder."""
    path = Path(path)
    data = encode(audio, sample_rate, path.suffix or "wav", settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
