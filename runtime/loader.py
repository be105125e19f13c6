"""Turn (model, backend, device) into a ready TangoPipeline, mixing backends per component.

`model` is a Tango checkpoint (Hub id or folder in the original layout), `random:full` / `random:tiny` (the
architecture with random weights, for timing), or an exported model folder (manifest.json: ONNX graphs and/or
TensorRT engines). Torch components need a checkpoint; an exported folder names the one it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .artifacts import artifact_root, fetch_components, is_artifact, open_artifact
from .backends.registry import Backend, backend_for_format, get_backend, route_options
from .checkpoint import Checkpoint, load_checkpoint
from .checks import debug_enabled
from .errors import BackendError
from .pipeline import TangoPipeline
from .specs import COMPONENTS, UNET


def parse_backends(backend: str | Mapping[str, str]) -> dict[str, Backend]:
    """One backend for all components ("onnxruntime"), or per component: {"text_encoder": "torch",
    "default": "onnxruntime"} or the same as a string, "text_encoder=torch,default=onnxruntime"."""
    if isinstance(backend, str) and "=" not in backend:
        return dict.fromkeys(COMPONENTS, get_backend(backend))
    if isinstance(backend, str):
        pairs = [item.split("=", 1) for item in backend.split(",") if item.strip()]
        if any(len(p) != 2 for p in pairs):
            raise BackendError(f"cannot parse backend {backend!r}; use e.g. 'text_encoder=torch,default=onnxruntime'")
        backend = {k.strip(): v for k, v in pairs}
    unknown = set(backend) - set(COMPONENTS) - {"default"}
    if unknown:
        raise BackendError(f"unknown component(s) {sorted(unknown)} in backend; components are {list(COMPONENTS)}")
    default = backend.get("default", "torch")
    return {name: get_backend(backend.get(name, default)) for name in COMPONENTS}


def _check_formats(artifact, backends: Mapping[str, Backend]) -> None:
    """Each network's files must be in a format its backend runs (ONNX for onnxruntime, IR for openvino, ...)."""
    for name, backend in backends.items():
        entry = artifact.manifest["components"].get(name)
        if backend.loads_from != "artifact" or entry is None or entry["format"] in backend.artifact_formats:
            continue
        raise BackendError(f"backend {backend.name!r} cannot run {name}: {artifact.root} holds it as "
                           f"{entry['format']} ({entry.get('precision')}); use backend "
                           f"{backend_for_format(entry['format']).name!r} for it")


def load_pipeline(
    model: str, backend: str | Mapping[str, str] = "torch", device: str | None = None, revision: str | None = None,
    **options: Any
) -> TangoPipeline:
    """Load every component with its backend and assemble the pipeline.

    model: a checkpoint or an exported folder, local or a Hub id (at `revision`: branch, tag or commit).
    options: precision ("fp32" | "fp16"), and backend-specific ones (providers, session_options, ...).
    Everything that can be refused cheaply (backend names, options, a missing export) is checked before
    any weights are read.
    """
    backends = parse_backends(backend)
    chosen = sorted({b.name: b for b in backends.values()}.values(), key=lambda b: b.name)
    backends_need_graphs = any(b.loads_from == "artifact" for b in chosen)
    root = artifact_root(model, revision) if backends_need_graphs or is_artifact(model) else None
    artifact = open_artifact(root) if root is not None else None
    lean = [b.name for b in chosen if b.loads_from == "artifact"]
    if artifact is None and lean:
        raise BackendError(
            f"backends {lean} run exported graphs: export first with "
            f"`tango-rt export --model {model} --out DIR` (and `tango-rt build` for TensorRT), then pass DIR"
        )
    if artifact is not None:
        _check_formats(artifact, backends)
    routed = route_options(chosen, options)
    if artifact is not None:
        fetch_components(model, artifact, [c for c in COMPONENTS if backends[c].loads_from == "artifact"], revision)
    loaders = {b.name: b.load().load_components for b in chosen}
    checkpoint: Checkpoint | None = None
    if artifact is None or any(b.loads_from == "checkpoint" for b in chosen):
        checkpoint = load_checkpoint(artifact.source_model if artifact else model, revision=None if artifact else
                                     revision)
        if artifact:
            artifact.check_source(checkpoint)
    components = {}
    for entry in chosen:
        names = [c for c in COMPONENTS if backends[c].name == entry.name]
        source = checkpoint if entry.loads_from == "checkpoint" else artifact
        components.update(loaders[entry.name](source, names, device=device, **routed[entry.name]))
    components[UNET].check_finite = debug_enabled()  # every step in debug mode; final latents always
    if artifact:
        return TangoPipeline(components, artifact.tokenizer(), artifact.pipeline_config, artifact.scheduler_config,
                             artifact.ranges)
    assert checkpoint is not None
    return TangoPipeline(components, checkpoint.tokenizer(), checkpoint.pipeline_config(), checkpoint.scheduler_config)
