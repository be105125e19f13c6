"""The backend registry: one entry per backend, read by the loader, `tango-rt bench`, `tango-rt check` and the CLI.

Adding a backend is one entry here plus its own module. The module exposes
`load_components(source, names, device=None, loaded=None, **options) -> {name: Component}` where `source` is a
Checkpoint (`loads_from="checkpoint"`) or an exported Artifact (`loads_from="artifact"`), `loaded` the pipeline's
networks loaded so far (a backend may share what it holds; it may ignore them), and takes exactly the options the
entry declares; the loader refuses any other option before loading anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType

from ..errors import BackendError
from ..precision import BF16, FP16, FP32, INT8, INT8_WEIGHTS, W8A8, W8A8_BF16


@dataclass(frozen=True)
class Backend:
    """What the rest of tango-rt needs to know about a backend without importing it."""

    name: str
    module: str  # import path of the module with load_components
    extra: str  # pip extra that installs it: pip install 'tango-rt[<extra>]'
    loads_from: str  # "checkpoint" (torch weights) or "artifact" (an exported folder)
    artifact_formats: tuple[str, ...]  # manifest formats of the files it runs ("onnx", "tensorrt", ...)
    precisions: tuple[str, ...]  # what `bench` variants can ask of it; the first is the default
    options: Mapping[str, str] = field(default_factory=dict)  # option name -> what it does
    aliases: tuple[str, ...] = ()
    # precision -> (precision of the export it runs, backend options); unlisted: (precision, {})
    variants: Mapping[str, tuple[str, Mapping[str, object]]] = field(default_factory=dict)

    @property
    def default_precision(self) -> str:
        return self.precisions[0]

    def variant(self, precision: str) -> tuple[str, dict[str, object]]:
        """The export precision and backend options that make this backend run at `precision`."""
        export, options = self.variants.get(precision, (precision, {}))
        return export, dict(options)

    def load(self) -> ModuleType:
        try:
            return importlib.import_module(self.module)
        except ImportError as exc:
            raise BackendError(
                f"backend {self.name!r} is not installed ({exc}); install it with: pip install 'tango-rt[{self.extra}]'"
            ) from None


BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend(
            "torch", "tango_rt.runtime.backends.torch_backend", "torch", "checkpoint", (), (FP32, FP16),
            {"precision": "fp32 | fp16 (CUDA; T5 and the policy's islands stay FP32)",
             "cuda_graph": "replay the UNet from CUDA graphs (CUDA)",
             "compile": "torch.compile the UNet (True or a mode name)"},
            aliases=("pytorch",), variants={FP16: (FP32, {"precision": FP16})},
        ),
        Backend(
            "onnxruntime", "tango_rt.runtime.backends.ort_backend", "onnxruntime", "artifact", ("onnx",),
            (FP32, FP16, INT8, W8A8),
            {"providers": "ONNX Runtime execution providers, in order",
             "threads": "intra-op threads",
             "optimization": "graph optimization level: disable | basic | extended | all",
             "session_options": "a ready onnxruntime.SessionOptions (overrides threads / optimization)",
             "io_binding": "bind outputs on the device (default: on for GPU providers)",
             "arena": "CPU memory arena: shared (default: one for all sessions) | session (one each) | off",
             "fused_attention": "run the export's graphs with fused attention where it wrote them (default: on CPU)"},
            aliases=("ort",),
        ),
        Backend(
            "tensorrt", "tango_rt.runtime.backends.trt_backend", "tensorrt", "artifact", ("tensorrt",),
            (FP16, FP32),
            {"cuda_graph": "replay each engine from a CUDA graph (static-shape engines)"},
            aliases=("trt",),
        ),
        Backend(
            "openvino", "tango_rt.runtime.backends.ov_backend", "openvino", "artifact", ("onnx", "openvino"),
            (FP32, BF16, INT8, W8A8, W8A8_BF16),
            {"precision": "fp32 | bf16 (CPUs with AVX-512 BF16 / AMX; what ran is read back)",
             "threads": "inference threads", "streams": "parallel inference streams",
             "performance_hint": "LATENCY | THROUGHPUT",
             "cache_dir": "compiled-model cache folder ('' disables; default ~/.cache/tango-rt/openvino)",
             "static_shapes": "compile per input shape (default: on under bf16)"},
            aliases=("ov",),
            variants={BF16: (FP32, {"precision": BF16}), INT8: (INT8_WEIGHTS, {}),
                      W8A8_BF16: (W8A8, {"precision": BF16})},
        ),
    )
}
ALIASES = {alias: b.name for b in BACKENDS.values() for alias in b.aliases}


def get_backend(name: str) -> Backend:
    """The registry entry for a backend name or alias (case-insensitive)."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose from {sorted(BACKENDS)}")
    return BACKENDS[key]


def backend_for_format(fmt: str) -> Backend:
    """The first registered backend that runs artifacts of this format (what an exported folder runs on)."""
    for backend in BACKENDS.values():
        if fmt in backend.artifact_formats:
            return backend
    raise BackendError(f"no backend runs {fmt!r} artifacts")


def route_options(backends: list[Backend], options: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """Give each backend the options it declares; an option that none of them declares is an error."""
    given = {k: v for k, v in options.items() if v is not None}
    declared = {k for b in backends for k in b.options}
    unknown = sorted(set(given) - declared)
    if unknown:
        hints = {b.name: sorted(b.options) for b in backends}
        raise BackendError(f"option(s) {unknown} do not apply to backend(s) {sorted(hints)}; they take {hints}")
    return {b.name: {k: v for k, v in given.items() if k in b.options} for b in backends}
