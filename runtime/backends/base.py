"""The one interface every backend implements per component: named numpy arrays in, one numpy array out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np

from ..checks import assert_finite
from ..specs import ComponentSpec, DimRange


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

    def __call__(self, **feeds: np.ndarray) -> np.ndarray:
        self.spec.check_feeds(feeds, self.ranges)
        output = self.run({name: feeds[name] for name in self.spec.input_names})
        if self.check_finite:
            assert_finite(output, f"{self.spec.name} ({self.backend})")
        return output

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Execute the network; feeds are already validated and ordered as spec.inputs."""

    def __repr__(self) -> str:
        return f"<{self.spec.name} on {self.backend}>"
