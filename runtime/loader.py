"""Turn (model, backend, device) into a ready TangoPipeline, mixing backends per component.

`model` is a Tango checkpoint (Hub id or folder in the original layout), `random:full` / `random:tiny` (the
architecture with random weights, for timing), or an exported model folder (manifest.json: ONNX graphs and/or
TensorRT engines). Torch components need a checkpoint; an exported folder names the one it came from.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from .artifacts import is_artifact, open_artifact
from .checkpoint import Checkpoint, load_checkpoint
from .checks import debug_enabled
from .errors import BackendError
from .pipeline import TangoPipeline
from .specs import COMPONENTS, UNET

BACKENDS = {
    "torch": "tango_rt.runtime.backends.torch_backend",
    "onnxruntime": "tango_rt.runtime.backends.ort_backend",
    "tensorrt": "tango_rt.runtime.backends.trt_backend",
}
BACKEND_ALIASES = {"ort": "onnxruntime", "trt": "tensorrt", "pytorch": "torch"}


def _backend_name(name: str) -> str:
    name = BACKEND_ALIASES.get(name.strip().lower(), name.strip().lower())
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose from {sorted(BACKENDS)}")
    return name


def parse_backends(backend: str | Mapping[str, str]) -> dict[str, str]:
    """One backend for all components ("onnxruntime"), or per component: {"text_encoder": "torch",
    "default": "onnxruntime"} or the same as a string, "text_encoder=torch,default=onnxruntime"."""
    if isinstance(backend, str) and "=" not in backend:
        return dict.fromkeys(COMPONENTS, _backend_name(backend))
    if isinstance(backend, str):
        pairs = [item.split("=", 1) for item in backend.split(",") if item.strip()]
        if any(len(p) != 2 for p in pairs):
            raise BackendError(f"cannot parse backend {backend!r}; use e.g. 'text_encoder=torch,default=onnxruntime'")
        backend = {k.strip(): v for k, v in pairs}
    unknown = set(backend) - set(COMPONENTS) - {"default"}
    if unknown:
        raise BackendError(f"unknown component(s) {sorted(unknown)} in backend; components are {list(COMPONENTS)}")
    default = backend.get("default", "torch")
    return {name: _backend_name(backend.get(name, default)) for name in COMPONENTS}


def backend_module(name: str) -> Any:
    try:
        return importlib.import_module(BACKENDS[name])
    except ImportError as exc:
        extra = {"torch": "torch", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}[name]
        raise BackendError(
            f"backend {name!r} is not installed ({exc}); install it with: pip install 'tango-rt[{extra}]'"
        ) from None


def _backend_options(loaders: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Route each option to the backends whose load_components takes it; one that none takes is an error."""
    routed = {
        name: {k: v for k, v in options.items() if k in inspect.signature(loader).parameters}
        for name, loader in loaders.items()
    }
    unused = {k for k, v in options.items() if v is not None} - {k for r in routed.values() for k in r}
    if unused:
        raise BackendError(f"option(s) {sorted(unused)} do not apply to backend(s) {sorted(loaders)}")
    return routed


def load_pipeline(
    model: str, backend: str | Mapping[str, str] = "torch", device: str | None = None, **options: Any
) -> TangoPipeline:
    """Load every component with its backend and assemble the pipeline.

    options: precision ("fp32" | "fp16"), and backend-specific ones (providers, session_options, ...).
    Everything that can be refused cheaply (backend names, options, a missing export) is checked before
    any weights are read.
    """
    backends = parse_backends(backend)
    artifact = open_artifact(model) if is_artifact(model) else None
    if artifact is None and set(backends.values()) != {"torch"}:
        raise BackendError(
            f"backends {sorted(set(backends.values()) - {'torch'})} run exported graphs: export first with "
            f"`tango-rt export --model {model} --out DIR` (and `tango-rt build` for TensorRT), then pass DIR"
        )
    loaders = {name: backend_module(name).load_components for name in sorted(set(backends.values()))}
    routed = _backend_options(loaders, options)
    checkpoint: Checkpoint | None = None
    if artifact is None or "torch" in loaders:
        checkpoint = load_checkpoint(artifact.source_model if artifact else model)
        if artifact:
            artifact.check_source(checkpoint)
    components = {}
    for name, loader in loaders.items():
        names = [c for c in COMPONENTS if backends[c] == name]
        components.update(loader(checkpoint if name == "torch" else artifact, names, device=device, **routed[name]))
    components[UNET].check_finite = debug_enabled()  # every step in debug mode; final latents always
    if artifact:
        return TangoPipeline(components, artifact.tokenizer(), artifact.pipeline_config, artifact.scheduler_config,
                             min_text_len=artifact.ranges["text_len"].min)
    assert checkpoint is not None
    return TangoPipeline(components, checkpoint.tokenizer(), checkpoint.pipeline_config(), checkpoint.scheduler_config)
