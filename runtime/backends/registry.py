"""The backend registry: one entry per backend, read by the loader, `tango-rt bench`, `tango-rt check` and the CLI.

Adding a backend is one entry here plus its own module. The module exposes
`load_components(source, names, device=None, **options) -> {name: Component}` where `source` is a Checkpoint
(`loads_from="checkpoint"`) or an exported Artifact (`loads_from="artifact"`), and takes exactly the options the
entry declares; the loader refuses any other option before loading anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType

from ..errors import BackendError


@dataclass(frozen=True)
class Backend:
    """What the rest of tango-rt needs to know about a backend without importing it."""

    name: str
    module: str  # import path of the module with load_components
    extra: str  # pip extra that installs it: pip install 'tango-rt[<extra>]'
    loads_from: str  # "checkpoint" (torch weights) or "artifact" (an exported folder)
    artifact_format: str | None  # the manifest format of the files it runs: "onnx", "tensorrt"; None for checkpoints
    precisions: tuple[str, ...]  # bench / export precisions it runs; the first is the default
    options: Mapping[str, str] = field(default_factory=dict)  # option name -> what it does
    aliases: tuple[str, ...] = ()

    @property
    def default_precision(self) -> str:
        return self.precisions[0]

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
            "torch", "tango_rt.runtime.backends.torch_backend", "torch", "checkpoint", None, ("fp32", "fp16"),
            {"precision": "fp32 | fp16 (CUDA; T5 and the policy's islands stay FP32)",
             "cuda_graph": "replay the UNet from CUDA graphs (CUDA)",
             "compile": "torch.compile the UNet (True or a mode name)"},
            aliases=("pytorch",),
        ),
        Backend(
            "onnxruntime", "tango_rt.runtime.backends.ort_backend", "onnxruntime", "artifact", "onnx",
            ("fp32", "fp16", "int8"),
            {"providers": "ONNX Runtime execution providers, in order",
             "threads": "intra-op threads",
             "optimization": "graph optimization level: disable | basic | extended | all",
             "session_options": "a ready onnxruntime.SessionOptions (overrides threads / optimization)",
             "io_binding": "bind outputs on the device (default: on for GPU providers)"},
            aliases=("ort",),
        ),
        Backend(
            "tensorrt", "tango_rt.runtime.backends.trt_backend", "tensorrt", "artifact", "tensorrt",
            ("fp16", "fp32"),
            {"cuda_graph": "replay each engine from a CUDA graph (static-shape engines)"},
            aliases=("trt",),
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
        if backend.artifact_format == fmt:
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
