"""The ONNX Runtime backend: exported graphs on CPU, CUDA or ONNX Runtime's TensorRT provider, without torch.

Imports only numpy and onnxruntime. Sessions use every graph optimization by default; threads and the
optimization level are options, and a ready `onnxruntime.SessionOptions` can be passed instead. On GPU
providers, I/O binding copies each output to the host once instead of through an intermediate allocation.

On the CPU provider, a network runs the export's ONNX Runtime graph where there is one (`<name>.ort.onnx`:
attention fused into MultiHeadAttention, whose CPU kernel is a flash attention): the full-size pipeline's peak
RSS is 5.3 GiB instead of 7.6 GiB (benchmarks/results/cpu-full vs ort-plain-graph) and its UNet step ~10% faster
(studies/unet_step_cpu). `fused_attention=False` runs the plain
graph; GPU providers run the plain graph unless asked (the fused one is not tested on GPUs).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..artifacts import Artifact
from ..errors import ArtifactError, BackendError
from ..specs import ComponentSpec, component_specs
from .base import Component, Outputs
from .devices import cuda_index, narrowed_threads

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64", "tensor(bool)": "bool"}
OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def resolve_providers(device: str | None, providers: Sequence[str] | None) -> list[str]:
    """Explicit providers (which must agree with an explicit device); else CUDA when the device asks for it (or is
    unset and CUDA is there), else CPU."""
    available = ort.get_available_providers()
    if providers:
        missing = [p for p in providers if p not in available]
        if missing:
            raise BackendError(f"onnxruntime providers {missing} are not available here (available: {available}); "
                               "GPU providers come with: pip install 'tango-rt[onnxruntime-gpu]'")
        on_gpu = providers[0] in GPU_PROVIDERS
        if device is not None and on_gpu != device.startswith("cuda"):
            raise BackendError(f"device {device!r} contradicts the onnxruntime providers {list(providers)}: "
                               "give one of them, or make them agree")
        return list(providers)
    wants_cuda = device is not None and device.startswith("cuda")
    if wants_cuda and "CUDAExecutionProvider" not in available:
        raise BackendError(
            f"device {device!r} needs onnxruntime's CUDAExecutionProvider, but this onnxruntime has {available}: "
            "pip install 'tango-rt[onnxruntime-gpu]'"
        )
    if wants_cuda or (device is None and "CUDAExecutionProvider" in available):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device not in (None, "cpu"):
        raise BackendError(f"onnxruntime backend: unknown device {device!r} (use 'cpu' or 'cuda[:N]')")
    return ["CPUExecutionProvider"]


ARENAS = ("shared", "session", "off")
_shared_arena_lock = threading.Lock()
_shared_arena_registered = False


def make_session_options(threads: int | None = None, optimization: str = "all", arena: str | bool = "shared"
                         ) -> ort.SessionOptions:
    """Session options. ONNX Runtime's CPU arena keeps the peak activations of a session allocated between calls;
    with one arena per session (`"session"`, ONNX Runtime's default) a pipeline of four networks holds the sum of
    their peaks. `"shared"` (the default) registers one CPU arena for the whole process and lets every session use
    it, so the pipeline holds the largest network's peak once: measured on the full-size pipeline (fused attention),
    peak RSS 5.3 GiB instead of 6.0 GiB at the same step time (benchmarks/results/cpu-full vs ort-arena-session).
    `"off"` allocates per call instead (True / False mean "shared" / "off"). Without `threads`, ONNX Runtime sizes
    its pool, unless this process may use fewer CPUs than the machine has (devices.narrowed_threads)."""
    if optimization not in OPTIMIZATION_LEVELS:
        raise BackendError(f"graph optimization must be one of {sorted(OPTIMIZATION_LEVELS)}, got {optimization!r}")
    if isinstance(arena, bool):
        arena = "shared" if arena else "off"
    if arena not in ARENAS:
        raise BackendError(f"onnxruntime arena must be one of {ARENAS} (or True / False), got {arena!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    options.enable_cpu_mem_arena = arena != "off"
    if arena == "shared":
        _register_shared_arena()
        options.add_session_config_entry("session.use_env_allocators", "1")
    threads = threads or narrowed_threads()
    if threads:
        options.intra_op_num_threads = threads
    return options


def _register_shared_arena() -> None:
    """One CPU arena in ONNX Runtime's process-wide environment, registered once (a second registration fails)."""
    global _shared_arena_registered
    with _shared_arena_lock:
        if not _shared_arena_registered:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(info, None)  # None: ONNX Runtime's default arena settings
            _shared_arena_registered = True


def check_graph_io(session: ort.InferenceSession, spec: ComponentSpec, path: str) -> None:
    """The graph must expose exactly the declared inputs and outputs: else it is stale or foreign."""
    got = {i.name: ORT_TYPES.get(i.type, i.type) for i in [*session.get_inputs(), *session.get_outputs()]}
    want = {t.name: t.dtype for t in [*spec.inputs, *spec.outputs]}
    if got != want:
        raise ArtifactError(
            f"{path}: graph IO {got} does not match the {spec.name} declaration {want}; the graph was exported by "
            "an incompatible version: re-export with `tango-rt export --force`"
        )


class OrtComponent(Component):
    backend = "onnxruntime"

    def __init__(self, spec: ComponentSpec, session: ort.InferenceSession, ranges, io_binding: bool, graph: str):
        super().__init__(spec, ranges)
        self.session = session
        self.graph = graph  # the graph file it runs: <name>.onnx, or <name>.ort.onnx with fused attention
        self.io_binding = io_binding
        provider = session.get_providers()[0]
        self.output_device = "cuda" if provider in GPU_PROVIDERS else "cpu"
        # the device the session runs on (cuda:N: its provider's device_id), where outputs are bound, not device 0
        self.device_id = int(session.get_provider_options().get(provider, {}).get("device_id", 0))

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> Outputs:
        if not self.io_binding:
            arrays = self.session.run(outputs, feeds)
        else:  # every output bound on the device; only the wanted ones are copied to the host
            binding = self.session.io_binding()
            for name, array in feeds.items():
                binding.bind_cpu_input(name, np.ascontiguousarray(array))
            for name in self.spec.output_names:
                binding.bind_output(name, self.output_device, self.device_id)
            self.session.run_with_iobinding(binding)
            values = dict(zip(self.spec.output_names, binding.get_outputs(), strict=True))
            arrays = [values[name].numpy() for name in outputs]
        return arrays[0] if len(arrays) == 1 else tuple(arrays)


def with_device_id(providers: Sequence[str], device: str | None) -> list:
    """The providers with the GPU ones pinned to the device's index ("cuda:1" -> device_id 1): onnxruntime's CUDA
    and TensorRT providers otherwise run on device 0 whatever the device option says."""
    if device is None or not device.startswith("cuda"):
        return list(providers)
    index = cuda_index(device, "onnxruntime")
    return [(p, {"device_id": index}) if p in GPU_PROVIDERS else p for p in providers]


def load_components(
    artifact: Artifact,
    names: Iterable[str],
    device: str | None = None,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    optimization: str = "all",
    session_options: ort.SessionOptions | None = None,
    io_binding: bool | None = None,
    arena: str | bool = "shared",
    fused_attention: bool | None = None,
    loaded: Mapping[str, Component] | None = None,
) -> dict[str, Component]:
    chosen = resolve_providers(device, providers)
    placed = with_device_id(chosen, device)
    fused = fused_attention if fused_attention is not None else chosen[0] == "CPUExecutionProvider"
    options = session_options or make_session_options(threads, optimization, arena)
    bind = io_binding if io_binding is not None else chosen[0] in GPU_PROVIDERS
    specs = component_specs(artifact.pipeline_config)
    components: dict[str, Component] = {}
    for name in names:
        path = str((fused and artifact.ort_graph(name)) or artifact.files(name, "onnx")[0])
        try:
            session = ort.InferenceSession(path, sess_options=options, providers=placed)
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt or foreign graphs
            raise ArtifactError(f"onnxruntime cannot load {path}: {exc}") from None
        check_graph_io(session, specs[name], path)
        components[name] = OrtComponent(specs[name], session, artifact.ranges, bind, Path(path).name)
    return components
