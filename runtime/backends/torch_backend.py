"""The PyTorch backend: the reference path (float32, CPU or CUDA) and the GPU fallback without TensorRT."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from ..checkpoint import Checkpoint
from ..errors import BackendError
from ..specs import TEXT_ENCODER, ComponentSpec, component_specs
from .base import Component
from .torch_models import ModelBuilder

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}


def default_device() -> str:
    """CUDA when available, as users of the original Tango expect a GPU; CPU otherwise."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> torch.device:
    name = device or default_device()
    try:
        resolved = torch.device(name)
    except RuntimeError as exc:
        raise BackendError(f"unknown torch device {name!r}: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"device {name!r} requested but this torch build sees no CUDA GPU; use device='cpu'")
    return resolved


class TorchComponent(Component):
    """Runs one `*Graph` module; float inputs are cast to the module's dtype, the output back to float32."""

    backend = "torch"

    def __init__(self, spec: ComponentSpec, module: torch.nn.Module, device: torch.device, dtype: torch.dtype):
        super().__init__(spec)
        self.module = module.to(device=device, dtype=dtype)
        self.device, self.dtype = device, dtype

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

    @torch.inference_mode()
    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        output = self.module(*(self._tensor(a) for a in feeds.values()))
        return output.float().cpu().numpy()


def load_components(
    checkpoint: Checkpoint, names: Iterable[str], device: str | None = None, precision: str = "fp32"
) -> dict[str, Component]:
    """Torch components for `names`. FP16 applies to the UNet, VAE and vocoder; T5 overflows in FP16 and stays FP32."""
    if precision not in PRECISIONS:
        raise BackendError(f"torch precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    target = resolve_device(device)
    if precision == "fp16" and target.type != "cuda":
        raise BackendError("torch fp16 needs a CUDA device: CPU kernels for half precision are slow or missing")
    specs = component_specs(checkpoint.pipeline_config())
    modules = ModelBuilder(checkpoint).build(list(names))
    return {
        name: TorchComponent(
            specs[name], module, target, torch.float32 if name == TEXT_ENCODER else PRECISIONS[precision]
        )
        for name, module in modules.items()
    }
