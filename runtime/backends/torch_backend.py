"""The PyTorch backend: the reference path (float32, CPU or CUDA) and the GPU fallback without TensorRT.

On CUDA it is also the fast path for machines without TensorRT: FP16 weights and activations with the FP32
islands of the precision policy (runtime/precision.py: T5 whole, the VAE's mid-block attention), scaled
dot-product attention (diffusers' default processor: fused kernels with FP32 softmax accumulation), optional
CUDA graphs (one capture per input shape after a warm-up run) and optional torch.compile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from ..checkpoint import Checkpoint
from ..errors import BackendError
from ..precision import FP16, FP32, PRECISION_POLICY
from ..specs import UNET, UNET_SHALLOW, ComponentSpec, component_specs
from .base import Component, Outputs
from .torch_models import ModelBuilder, ShallowUNetGraph

PRECISIONS = {FP32: torch.float32, FP16: torch.float16}


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


def upcast(module: torch.nn.Module) -> None:
    """Run `module` in FP32 inside a reduced-precision network: floating inputs cast up, the output cast back
    to the dtype its input had. Idempotent: a module is hooked once."""
    module.float()
    if getattr(module, "_tango_rt_upcast", False):
        return
    module._tango_rt_upcast = True
    incoming: list[torch.dtype] = []

    def up(value: Any) -> Any:
        return value.float() if torch.is_tensor(value) and value.is_floating_point() else value

    def cast_inputs(_module, args, kwargs):
        incoming[:] = [a.dtype for a in args if torch.is_tensor(a) and a.is_floating_point()][:1]
        return tuple(up(a) for a in args), {k: up(v) for k, v in kwargs.items()}

    def cast_output(_module, _args, _kwargs, output):
        return output.to(incoming[0]) if incoming and torch.is_tensor(output) else output

    module.register_forward_pre_hook(cast_inputs, with_kwargs=True)
    module.register_forward_hook(cast_output, with_kwargs=True)


class TorchComponent(Component):
    """Runs one `*Graph` module; float inputs are cast to the module's dtype, the output back to float32."""

    backend = "torch"

    def __init__(self, spec: ComponentSpec, module: torch.nn.Module, device: torch.device, dtype: torch.dtype):
        """`module` is already on `device` in `dtype` (with its FP32 islands): see wrap_modules."""
        super().__init__(spec)
        self.module = module
        self.device, self.dtype = device, dtype
        self.fp32_inputs = frozenset(PRECISION_POLICY[spec.name].fp32_inputs)

    def _tensor(self, name: str, array: np.ndarray) -> torch.Tensor:
        """An input on the device: float inputs in the network's dtype, but those the precision policy keeps FP32."""
        array = np.ascontiguousarray(array)
        if not array.flags.writeable:  # torch.from_numpy wants writable memory
            array = array.copy()
        tensor = torch.from_numpy(array).to(self.device, non_blocking=True)
        cast = tensor.is_floating_point() and name not in self.fp32_inputs
        return tensor.to(self.dtype) if cast else tensor

    def forward(self, tensors: list[torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return self.module(*tensors)

    @torch.inference_mode()
    def run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> Outputs:
        # the calling thread's current CUDA device is the component's (the server runs us outside the loading
        # thread): streams and CUDA graphs are created on the current device, not the module's
        with torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext():
            result = self.forward([self._tensor(name, a) for name, a in feeds.items()])
            tensors = dict(zip(self.spec.output_names, result if isinstance(result, tuple) else (result,),
                               strict=True))
            arrays = tuple(tensors[name].float().cpu().numpy() for name in outputs)  # only these leave the device
            return arrays[0] if len(arrays) == 1 else arrays


class CudaGraphComponent(TorchComponent):
    """A TorchComponent replayed from CUDA graphs: one capture per distinct input shape, after a warm-up run.

    Inputs are copied into static tensors the graph reads, so replays skip Python and kernel-launch overhead
    (the UNet runs 100-200 times per clip at the same shape). All graphs share one memory pool."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]] = {}

    def _capture(self, tensors: list[torch.Tensor]) -> tuple:
        static = [t.clone() for t in tensors]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.module(*static)  # warm-up outside the graph: lazy init, cuDNN / cuBLAS autotuning
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            output = self.module(*static)
        return graph, static, output

    def forward(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        key = tuple((tuple(t.shape), t.dtype) for t in tensors)
        if key not in self.graphs:
            self.graphs[key] = self._capture(tensors)
        graph, static, output = self.graphs[key]
        for target, source in zip(static, tensors, strict=True):
            target.copy_(source)
        graph.replay()
        return output


def load_components(
    checkpoint: Checkpoint,
    names: Iterable[str],
    device: str | None = None,
    precision: str = FP32,
    cuda_graph: bool = False,
    compile: bool | str = False,
    loaded: Mapping[str, Component] | None = None,
) -> dict[str, Component]:
    """Torch components for `names`. FP16 follows the precision policy (T5 stays FP32, the policy's modules are
    upcast). cuda_graph captures the UNet; compile wraps the UNet in torch.compile (True: default mode, or a
    mode name such as "max-autotune"). The shallow UNet branch is made from the pipeline's loaded torch UNet
    (`loaded`), sharing its modules, device and precision, rather than from a second copy of 866M parameters."""
    specs = component_specs(checkpoint.pipeline_config())
    _check_options(precision, resolve_device(device), cuda_graph)
    names, components = list(names), {}
    unet = (loaded or {}).get(UNET)
    if UNET_SHALLOW in names and getattr(unet, "backend", None) == "torch":
        graph = getattr(unet.module, "_orig_mod", unet.module)  # under torch.compile, the module it wraps
        kind = CudaGraphComponent if cuda_graph else TorchComponent
        shallow = ShallowUNetGraph(graph.unet, graph.cut).eval()
        components[UNET_SHALLOW] = kind(specs[UNET_SHALLOW], shallow, unet.device, unet.dtype)
        names.remove(UNET_SHALLOW)
    modules = ModelBuilder(checkpoint).build(names)
    return {**components, **wrap_modules(modules, specs, device, precision, cuda_graph, compile)}


def _check_options(precision: str, target: torch.device, cuda_graph: bool) -> None:
    if precision not in PRECISIONS:
        raise BackendError(f"torch precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if target.type != "cuda" and (precision == FP16 or cuda_graph):
        raise BackendError("torch fp16 and CUDA graphs need a CUDA device (CPU half-precision kernels are slow)")


def wrap_modules(
    modules: dict[str, torch.nn.Module],
    specs: dict[str, ComponentSpec],
    device: str | None = None,
    precision: str = FP32,
    cuda_graph: bool = False,
    compile: bool | str = False,
) -> dict[str, Component]:
    """Components around already-built `*Graph` modules, moved and cast in place (benchmarks reuse one set of
    modules across precisions instead of rebuilding 1.3 B parameters)."""
    target = resolve_device(device)
    _check_options(precision, target, cuda_graph)
    components: dict[str, Component] = {}
    for name, module in modules.items():
        policy = PRECISION_POLICY[name]
        dtype = torch.float32 if policy.whole_graph_fp32 else PRECISIONS[precision]
        module.to(device=target, dtype=dtype)  # in place; then the policy's islands go back to FP32
        if dtype != torch.float32:
            submodules = dict(module.named_modules())
            for island in policy.fp32_modules(submodules):
                upcast(submodules[island])
        if name == UNET and compile:
            module = torch.compile(module, mode=None if compile is True else compile)
        kind = CudaGraphComponent if name in (UNET, UNET_SHALLOW) and cuda_graph else TorchComponent
        components[name] = kind(specs[name], module, target, dtype)
    return components
