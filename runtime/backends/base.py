"""The one interface every backend implements per component: named numpy arrays in, numpy arrays out (one array
for a network with one declared output, a tuple in declaration order for one with several: the VAE encoder's
posterior mean and log-variance, the UNet's noise prediction and deep feature). A caller may ask for some outputs
only (`outputs=`): a backend then need not copy the others to the host (the UNet's deep feature is 40x its noise
prediction, and only cached steps need it)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np

from ..checks import assert_finite
from ..errors import BackendError, InputError
from ..specs import ComponentSpec, DimRange

Outputs = np.ndarray | tuple[np.ndarray, ...]


class Component(ABC):
    """A network behind its ComponentSpec. Subclasses implement `run`; calls go through `__call__`.

    `__call__` checks names, dtypes and shapes against the spec (and against `ranges`, the shapes an exported
    artifact was declared for) before the backend sees them, so a bad shape fails with a message naming the
    input instead of deep inside ONNX Runtime or TensorRT; outputs are checked for NaN/Inf when asked.
    """

    backend: str = "?"

    def __init__(self, spec: ComponentSpec, ranges: Mapping[str, DimRange] | None = None, check_finite: bool = True):
        self.spec = spec
        self.ranges = dict(ranges or {})
        self.check_finite = check_finite

    def __call__(self, outputs: Sequence[str] | None = None, **feeds: np.ndarray) -> Outputs:
        """The network on `feeds`; `outputs` names the declared outputs wanted, in that order (default: all)."""
        names = list(outputs) if outputs is not None else self.spec.output_names
        unknown = [n for n in names if n not in self.spec.output_names]
        if unknown or not names:
            raise InputError(f"{self.spec.name}: outputs {names} are not among its outputs {self.spec.output_names}")
        feeds, rows = self._pad_batch(feeds)
        self.spec.check_feeds(feeds, self.ranges)
        result = self.run({name: feeds[name] for name in self.spec.input_names}, names)
        arrays = result if isinstance(result, tuple) else (result,)
        if len(arrays) != len(names):
            raise BackendError(f"{self.spec.name} ({self.backend}) returned {len(arrays)} outputs for {names}")
        if self.check_finite:
            for name, array in zip(names, arrays, strict=True):
                named = f" output {name}" if len(self.spec.outputs) > 1 else ""
                assert_finite(array, f"{self.spec.name} ({self.backend}){named}")
        if rows is not None:
            arrays = tuple(array[:rows] for array in arrays)
        return arrays[0] if len(arrays) == 1 else arrays

    def _pad_batch(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int | None]:
        """A fixed-batch network (a static TensorRT engine: the batch axis's range has min == max) called with
        fewer rows gets its last row repeated up to that batch, and the output is cut back. Rows are independent
        in all four networks (per-sample normalisation, no cross-row attention), so the real rows' results are
        those of an unpadded call; a guidance-free call (half the CFG batch) or a server batch smaller than the
        engine's then runs instead of being refused."""
        symbol = self.spec.inputs[0].shape[0]
        fixed = self.ranges.get(symbol) if isinstance(symbol, str) else None
        first = feeds.get(self.spec.inputs[0].name)
        if fixed is None or fixed.min != fixed.max or first is None or not 0 < len(first) < fixed.max:
            return feeds, None
        rows = len(first)
        padded = {}
        for name, array in feeds.items():
            array = np.asarray(array)
            if array.ndim and len(array) == rows:
                array = np.concatenate([array, np.repeat(array[-1:], fixed.max - rows, axis=0)])
            padded[name] = array
        return padded, rows

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> Outputs:
        """Execute the network; feeds are already validated and ordered as spec.inputs. Returns the arrays of the
        declared outputs `outputs`, in that order (one array, or a tuple of several); the others need not be
        copied to the host."""

    def __repr__(self) -> str:
        return f"<{self.spec.name} on {self.backend}>"
