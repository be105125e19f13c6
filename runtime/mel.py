"""Audio -> log-mel, as the original's training front end (AudioLDM's TacotronSTFT.mel_spectrogram), in numpy.

The checkpoint's own buffers do the work (`pytorch_model_stft.bin`: `stft_fn.forward_basis`, the Hann-windowed
real and imaginary DFT rows, and `mel_basis`, 64 Slaney mel filters over 0-8 kHz), read once per model:

    frames   = the waveform reflect-padded by n_fft / 2 on both sides, cut every hop samples (n_fft each)
    spectrum = frames @ forward_basis.T              (the original's conv1d with stride hop)
    mel      = |spectrum| @ mel_basis.T              (magnitude = sqrt(re^2 + im^2))
    log_mel  = log(max(mel, 1e-5))

for the waveform padded with silence (or cut) to frames x hop samples, then cut to the frames asked for (the
original's read_wav_file, pad_wav and _pad_spec). No torch: the lean path runs this with the buffers an export
copies into its folder (`mel_frontend.npz`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError, CheckpointError, InputError

LOG_FLOOR = 1e-5  # dynamic_range_compression's clip_val: log(1e-5) = -11.51 is silence
STFT_KEYS = ("filter_length", "hop_length", "win_length", "n_mel_channels", "sampling_rate", "mel_fmin", "mel_fmax")
FORWARD_BASIS = "stft_fn.forward_basis"  # keys of pytorch_model_stft.bin
MEL_BASIS = "mel_basis"


@dataclass(frozen=True)
class MelFrontEnd:
    """The STFT and mel filters of one checkpoint (float32), and its stft_config.json."""

    forward_basis: np.ndarray  # (2 * (n_fft // 2 + 1), n_fft): real rows, then imaginary rows, windowed
    mel_basis: np.ndarray  # (n_mels, n_fft // 2 + 1)
    config: dict[str, Any]

    def __post_init__(self) -> None:
        n_fft, bins = self.config["filter_length"], self.config["n_mel_channels"]
        cutoff = n_fft // 2 + 1
        if self.forward_basis.shape != (2 * cutoff, n_fft) or self.mel_basis.shape != (bins, cutoff):
            raise CheckpointError(f"mel front end: forward basis {self.forward_basis.shape} and mel basis "
                                  f"{self.mel_basis.shape} do not fit n_fft {n_fft} and {bins} mel bins")

    @property
    def hop(self) -> int:
        return int(self.config["hop_length"])

    @property
    def sample_rate(self) -> int:
        return int(self.config["sampling_rate"])

    def log_mel(self, wave: np.ndarray, frames: int) -> np.ndarray:
        """(frames, n_mels) float32 log-mel of a waveform in [-1, 1]. As the original's wav_to_fbank: the waveform
        is padded with silence (or cut) to frames x hop samples, clipped to [-1, 1] with NaN as 0, transformed
        (frames + 1 STFT frames) and cut to `frames`."""
        n_fft = self.forward_basis.shape[1]
        x = np.asarray(wave, dtype=np.float32)
        if x.ndim != 1 or frames * self.hop <= n_fft // 2:
            raise InputError(f"the mel front end needs a mono waveform and more than {n_fft // 2} samples of "
                             f"frames, got shape {x.shape} and {frames} frames")
        segment = frames * self.hop
        x = np.pad(x[:segment], (0, max(0, segment - len(x))))
        x = np.nan_to_num(np.clip(x, -1, 1))
        padded = np.pad(x, n_fft // 2, mode="reflect")
        windows = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[:: self.hop]
        spectrum = windows @ self.forward_basis.T
        cutoff = spectrum.shape[1] // 2
        real, imag = spectrum[:, :cutoff], spectrum[:, cutoff:]
        magnitude = np.sqrt(real * real + imag * imag)
        log_mel = np.log(np.maximum(magnitude @ self.mel_basis.T, np.float32(LOG_FLOOR)))
        return np.ascontiguousarray(log_mel[:frames], dtype=np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """The buffers as an export stores them (mel_frontend.npz)."""
        return {FORWARD_BASIS: self.forward_basis, MEL_BASIS: self.mel_basis}


def stft_config(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The TacotronSTFT arguments of a stft_config.json, checked: the keys and the window the runtime implements."""
    missing = [k for k in STFT_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{where}: missing key(s) {missing}; expected {list(STFT_KEYS)}")
    if data["win_length"] != data["filter_length"]:
        raise CheckpointError(f"{where}: win_length {data['win_length']} != filter_length {data['filter_length']} "
                              "is not a Tango front end (n_fft 1024, window 1024)")
    return {k: data[k] for k in STFT_KEYS}


def from_arrays(arrays: dict[str, Any], config: dict[str, Any], where: str) -> MelFrontEnd:
    missing = [k for k in (FORWARD_BASIS, MEL_BASIS) if k not in arrays]
    if missing:
        raise CheckpointError(f"{where}: missing {missing} (expected the TacotronSTFT buffers)")
    return MelFrontEnd(np.asarray(arrays[FORWARD_BASIS], np.float32).reshape(-1, config["filter_length"]),
                       np.asarray(arrays[MEL_BASIS], np.float32), stft_config(config, where))


def load_npz(path: Path, config: dict[str, Any]) -> MelFrontEnd:
    """The front end an export wrote (its npz and the manifest's stft config)."""
    try:
        with np.load(path) as data:
            return from_arrays({k: data[k] for k in data.files}, config, str(path))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a readable mel front end ({exc}); re-export the folder") from None


def load_torch_file(path: Path, config: dict[str, Any]) -> MelFrontEnd:
    """The front end of a checkpoint in the original layout (`pytorch_model_stft.bin`, a torch state dict)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"missing file {path}") from None
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable torch state dict ({type(exc).__name__}: {exc})") from None
    return from_arrays({k: v.numpy() for k, v in state.items()}, config, str(path))


def synthesized(config: dict[str, Any]) -> MelFrontEnd:
    """For random-weight models (timing), which ship no front-end buffers: built as TacotronSTFT builds them
    (numpy's DFT rows times a periodic Hann window; librosa's Slaney mel filters)."""
    try:
        import librosa
    except ImportError as exc:
        raise CheckpointError(f"a random-weight model's mel front end is built with librosa ({exc}): "
                              "pip install librosa") from None
    n_fft = config["filter_length"]
    cutoff = n_fft // 2 + 1
    dft = np.fft.fft(np.eye(n_fft))[:cutoff]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # scipy's get_window("hann", fftbins=True)
    basis = (np.concatenate([dft.real, dft.imag]) * window).astype(np.float32)
    mel = librosa.filters.mel(sr=config["sampling_rate"], n_fft=n_fft, n_mels=config["n_mel_channels"],
                              fmin=config["mel_fmin"], fmax=config["mel_fmax"]).astype(np.float32)
    return MelFrontEnd(basis, mel, stft_config(config, "random model"))
