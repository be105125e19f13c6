"""The TensorRT backend: prebuilt engines, one CUDA stream, preallocated I/O, one shared activation buffer.

Imports tensorrt and cuda-python only (no torch). Every stage of the pipeline runs one after another on the
same stream, so all engines share a single device allocation for their activations (execution contexts are
created with the USER_MANAGED strategy); each input and output has a buffer sized for the largest shape of the
engine's profile, allocated once. Every enqueue's return value is checked. With `cuda_graph=True` a static
engine's launch is captured into a CUDA graph after one warm-up run and replayed afterwards. An input that is the
very same array object as in the previous call (the UNet's text embeddings and mask, constant over a generation)
is not copied to the device again: the loop never changes an array it has handed over.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..artifacts import Artifact
from ..errors import ArtifactError, BackendError
from ..specs import ComponentSpec, DimRange, component_specs
from .base import Component, Outputs
from .cuda_runtime import CudaRuntime
from .devices import cuda_index
from .trt_compat import check_environment, check_onnx_source, import_tensorrt


@dataclass(frozen=True)
class BufferPlan:
    """One preallocated device buffer per I/O tensor, sized for the largest shape the profile admits."""

    name: str
    dtype: str
    max_shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.max_shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def plan_buffers(spec: ComponentSpec, ranges: Mapping[str, DimRange], io_dtypes: Mapping[str, str] | None = None):
    """Buffers for all inputs and outputs; dtypes default to the declaration (the engine may say otherwise)."""
    largest = {k: r.max for k, r in ranges.items()}
    dtypes = dict(io_dtypes or {})
    return [BufferPlan(t.name, dtypes.get(t.name, t.dtype), t.resolve(largest)) for t in spec.inputs + spec.outputs]


class DeviceMemory:
    """Owns the device allocations of one set of engines; frees them when the last component goes away."""

    def __init__(self, cuda: CudaRuntime):
        self.cuda = cuda
        self.pointers: list[int] = []

    def allocate(self, nbytes: int) -> int:
        pointer = self.cuda.malloc(nbytes)
        self.pointers.append(pointer)
        return pointer

    def __del__(self) -> None:
        for pointer in self.pointers:
            with contextlib.suppress(Exception):  # interpreter shutdown: the driver frees everything anyway
                self.cuda.free(pointer)


class TrtComponent(Component):
    backend = "tensorrt"

    def __init__(
        self,
        spec: ComponentSpec,
        context: Any,
        cuda: CudaRuntime,
        stream: Any,
        buffers: dict[str, int],
        io_dtypes: dict[str, np.dtype],
        ranges,
        memory: DeviceMemory,
        cuda_graph: bool = False,
    ):
        super().__init__(spec, ranges)
        self.context, self.cuda, self.stream = context, cuda, stream
        self.buffers, self.io_dtypes, self.memory = buffers, io_dtypes, memory
        self.cuda_graph = cuda_graph
        self._graph: Any = None
        self._graph_shapes: tuple | None = None
        self._last_shapes: tuple | None = None
        self._resident: dict[str, np.ndarray] = {}  # the array each input buffer holds a copy of, by identity
        for name, pointer in buffers.items():
            if not context.set_tensor_address(name, pointer):
                raise BackendError(f"{spec.name}: TensorRT rejected the address of tensor {name!r}")

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> Outputs:
        shapes = tuple(array.shape for array in feeds.values())
        for name, array in feeds.items():
            if self._resident.get(name) is not array:  # the text conditioning is the same object every step
                data = np.ascontiguousarray(array, dtype=self.io_dtypes[name])
                self.cuda.copy_to_device(self.buffers[name], data, self.stream)
                self._resident[name] = array  # held, so its id cannot be reused by another array
            if not self.context.set_input_shape(name, array.shape):
                raise BackendError(f"{self.spec.name}: TensorRT rejected shape {array.shape} for input {name!r}")
        self._execute(shapes)
        results = []
        for name in outputs:  # only the wanted outputs are copied back (the UNet's deep feature when caching)
            result = np.empty(tuple(self.context.get_tensor_shape(name)), dtype=self.io_dtypes[name])
            self.cuda.copy_to_host(result, self.buffers[name], self.stream)
            results.append(result)
        self.cuda.synchronize(self.stream)
        outputs = tuple(result.astype(np.float32, copy=False) for result in results)
        return outputs[0] if len(outputs) == 1 else outputs

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream):  # cuda-python's stream object, as TensorRT's samples
            raise BackendError(f"{self.spec.name}: TensorRT execute_async_v3 failed (see the TensorRT log)")

    def _execute(self, shapes: tuple) -> None:
        """Enqueue; with CUDA graphs, the second call at the same shapes captures, later ones replay."""
        if self.cuda_graph and self._graph is not None and shapes == self._graph_shapes:
            self.cuda.launch(self._graph, self.stream)
        elif self.cuda_graph and self._graph is None and shapes == self._last_shapes:
            self.cuda.begin_capture(self.stream)
            self._enqueue()
            self._graph, self._graph_shapes = self.cuda.end_capture(self.stream), shapes
            self.cuda.launch(self._graph, self.stream)
        else:
            self._enqueue()
        self._last_shapes = shapes


def current_environment(trt: Any, cuda: CudaRuntime) -> dict[str, str]:
    gpu, capability = cuda.device_properties()
    return {"version": trt.__version__, "gpu": gpu, "compute_capability": capability}


def load_components(
    artifact: Artifact,
    names: Iterable[str],
    device: str | None = None,
    cuda_graph: bool = False,
    cuda: CudaRuntime | None = None,
    trt: Any = None,
    loaded: Mapping[str, Component] | None = None,
) -> dict[str, Component]:
    """Deserialize the engines, check they fit this machine, and allocate everything once."""
    trt = trt or import_tensorrt()
    cuda = cuda or CudaRuntime(cuda_index(device, "tensorrt"))
    check_environment(artifact.manifest, current_environment(trt, cuda), str(artifact.root))
    check_onnx_source(artifact.manifest, str(artifact.root))
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engines = {}
    for name in names:
        path = artifact.files(name, "tensorrt")[0]
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise ArtifactError(f"TensorRT could not deserialize {path}; rebuild it with `tango-rt build --force`")
        engines[name] = engine
    memory = DeviceMemory(cuda)
    shared = max(engine.device_memory_size_v2 for engine in engines.values())
    scratch = memory.allocate(shared)
    stream = cuda.create_stream()
    specs = component_specs(artifact.pipeline_config)
    components: dict[str, Component] = {}
    for name, engine in engines.items():
        context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if context is None:
            raise BackendError(f"TensorRT could not create an execution context for {name}")
        context.set_device_memory(scratch, shared)
        io_dtypes = {t.name: np.dtype(trt.nptype(engine.get_tensor_dtype(t.name)))
                     for t in specs[name].inputs + specs[name].outputs}
        buffers = {
            plan.name: memory.allocate(plan.nbytes)
            for plan in plan_buffers(specs[name], artifact.ranges, {k: v.name for k, v in io_dtypes.items()})
        }
        components[name] = TrtComponent(specs[name], context, cuda, stream, buffers, io_dtypes, artifact.ranges,
                                        memory, cuda_graph=cuda_graph)
    return components
