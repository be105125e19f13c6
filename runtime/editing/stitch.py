"""Joining the windows of a long clip (long-form, extension) into the segments a stream sends.

Windows overlap by OVERLAP_S (runtime/editing/geometry.py); both windows render the overlap's latents, and the
audio crosses from one to the next over the middle half of the overlap (`seam_zone`). A segment is sent as soon as
its window is decoded, so the stitcher holds the part of each window that the next one crossfades over, and counts
the samples sent, so a row's segments add up to exactly `total` samples. For an extension, the input itself comes
first, joined to the first window by a CROSSFADE_S crossfade at its very end.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..audio_input import InputAudio
from .geometry import CROSSFADE_S, Window, crossfade, seam_zone


class Stitcher:
    """The held audio and the count of samples sent, for every row of a windowed run.

    windows: the run's windows; total: samples per row in all; per_frame: waveform samples per latent frame;
    inputs: per row of the call, the input an extension continues (None for long-form)."""

    def __init__(self, windows: Sequence[Window], total: int, per_frame: int,
                 inputs: Sequence[InputAudio] | None = None):
        self.windows, self.total, self.per_frame = list(windows), total, per_frame
        self.inputs = inputs
        self.sent = 0
        self.held: np.ndarray | None = None  # (rows, samples): the last window's audio from its seam zone on

    def select(self, keep: np.ndarray) -> None:
        """Rows withdrawn since the last window leave (keep: positions among the rows of the last window)."""
        if self.held is not None:
            self.held = self.held[keep]

    def segment(self, index: int, wave: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(rows, samples): what window `index`, decoded to `wave` for the call's rows `rows`, adds to the stream."""
        win = self.windows[index]
        origin = win.start * self.per_frame  # the global sample of wave[:, 0]
        last = index == len(self.windows) - 1
        until = self.total if last else self._zone(index)[0]
        pieces = []
        if index == 0 and self.inputs:
            pieces.extend(self._input_head(wave, rows, origin))
        elif self.held is not None:
            end = self.sent + self.held.shape[1]
            pieces.append(crossfade(self.held, wave[:, self.sent - origin : end - origin]))
            self.sent = end
        pieces.append(wave[:, self.sent - origin : until - origin])
        self.sent = until
        if not last:
            begin, end = self._zone(index)
            self.held = wave[:, begin - origin : end - origin]
        return np.concatenate(pieces, axis=1).astype(np.float32)

    def _zone(self, index: int) -> tuple[int, int]:
        return seam_zone(self.windows[index], self.windows[index + 1], self.per_frame)

    def _input_head(self, wave: np.ndarray, rows: np.ndarray, origin: int) -> list[np.ndarray]:
        """The input unchanged up to its last CROSSFADE_S, then crossfaded into the first window."""
        length = self.inputs[0].samples
        prefix = length - round(CROSSFADE_S * self.inputs[0].sample_rate)
        head = np.stack([self.inputs[row].wave[:prefix] for row in rows])
        tail = np.stack([self.inputs[row].wave[prefix:length] for row in rows])
        self.sent = length
        return [head, crossfade(tail, wave[:, prefix - origin : length - origin])]
