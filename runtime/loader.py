"""Turn (model, backend, device) into a ready TangoPipeline, mixing backends per component.

`model` is a Tango checkpoint (Hub id or folder in the original layout), `random:full` / `random:tiny` (the
architecture with random weights, for timing), or an exported model folder (manifest.json: ONNX graphs and/or
TensorRT engines). Torch components need a checkpoint; an exported folder names the one it came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .artifacts import Artifact, artifact_root, fetch_components, is_artifact, open_artifact
from .backends.base import Component
from .backends.registry import Backend, backend_for_format, get_backend, route_options
from .checkpoint import Checkpoint, load_checkpoint
from .checks import debug_enabled
from .errors import ArtifactError, BackendError
from .mel import MelFrontEnd
from .pipeline import TangoPipeline
from .specs import COMPONENTS, CORE, UNET


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


class ComponentLoader:
    """Loads networks with their backends, now (the core four) or on first use (the VAE encoder, for audio in),
    and the audio front end: a pipeline keeps one so that generation never pays for what only editing uses."""

    def __init__(self, model: str, backends: Mapping[str, Backend], routed: Mapping[str, dict], device: str | None,
                 revision: str | None, artifact: Artifact | None, checkpoint: Checkpoint | None):
        self.model, self.backends, self.routed, self.device = model, backends, routed, device
        self.revision, self.artifact, self._checkpoint = revision, artifact, checkpoint

    @property
    def checkpoint(self) -> Checkpoint:
        """The checkpoint torch networks load from (an export names the one it came from), read when first asked."""
        if self._checkpoint is None:
            artifact = self.artifact
            self._checkpoint = load_checkpoint(artifact.source_model if artifact else self.model,
                                               revision=None if artifact else self.revision)
            if artifact:
                artifact.check_source(self._checkpoint)
        return self._checkpoint

    def digest(self) -> str:
        """A digest of the model loaded, for a clip's settings (runtime/metadata.py): an exported folder's manifest
        (which holds every file's SHA-256), else the checkpoint's configs and weight files' sizes (cheap: hashing
        a 5 GB checkpoint again for every clip would not be), or its random seed."""
        import hashlib
        import json

        if self.artifact is not None:
            return "sha256:" + hashlib.sha256((self.artifact.root / "manifest.json").read_bytes()).hexdigest()
        checkpoint = self.checkpoint
        described = {"configs": [checkpoint.t5_config, checkpoint.unet_config, checkpoint.vae_config,
                                 checkpoint.vocoder_config],
                     "weights": {name: path.stat().st_size for name, path in sorted(checkpoint.weights.items())},
                     "random_seed": checkpoint.random_seed if checkpoint.is_random else None}
        text = json.dumps(described, sort_keys=True, default=str)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def load(self, names: Sequence[str], loaded: Mapping[str, Component] | None = None) -> dict[str, Component]:
        """The networks `names`, each on its backend (one load call per backend); `loaded`, the pipeline's networks
        so far, lets a backend share what it already holds (torch: the shallow UNet branch uses the UNet's modules)."""
        artifact, components = self.artifact, {}
        lean = [n for n in names if self.backends[n].loads_from == "artifact"]
        if artifact is not None:
            absent = [n for n in lean if n not in artifact.manifest["components"]]
            if absent:
                raise ArtifactError(f"{artifact.root} has no {', '.join(absent)} (exported by an earlier tango-rt, "
                                    "before audio input): re-export it with `tango-rt export --force`")
            fetch_components(self.model, artifact, lean, self.revision)
        for backend in sorted({self.backends[n].name: self.backends[n] for n in names}.values(), key=lambda b: b.name):
            mine = [n for n in names if self.backends[n].name == backend.name]
            source = self.checkpoint if backend.loads_from == "checkpoint" else artifact
            components.update(backend.load().load_components(source, mine, device=self.device, loaded=loaded,
                                                             **self.routed[backend.name]))
        return {name: components[name] for name in names}

    def frontend(self) -> MelFrontEnd:
        """The audio -> log-mel front end: the export's copy, else the checkpoint's own files."""
        if self.artifact is not None:
            fetch_components(self.model, self.artifact, [], self.revision, front_end=True)
            return self.artifact.mel_frontend()
        return self.checkpoint.mel_frontend()


def load_pipeline(
    model: str, backend: str | Mapping[str, str] = "torch", device: str | None = None, revision: str | None = None,
    **options: Any
) -> TangoPipeline:
    """Load the core networks with their backends and assemble the pipeline (the VAE encoder loads on first use).

    model: a checkpoint or an exported folder, local or a Hub id (at `revision`: branch, tag or commit).
    options: precision ("fp32" | "fp16"), and backend-specific ones (providers, session_options, ...).
    Everything that can be refused cheaply (backend names, options, a missing export) is checked before
    any weights are read.
    """
    backends = parse_backends(backend)
    chosen = sorted({b.name: b for b in backends.values()}.values(), key=lambda b: b.name)
    lean = [b.name for b in chosen if b.loads_from == "artifact"]
    root = artifact_root(model, revision) if lean or is_artifact(model) else None
    artifact = open_artifact(root) if root is not None else None
    if artifact is None and lean:
        raise BackendError(
            f"backends {lean} run exported graphs: export first with "
            f"`tango-rt export --model {model} --out DIR` (and `tango-rt build` for TensorRT), then pass DIR"
        )
    if artifact is not None:
        _check_formats(artifact, backends)
    routed = route_options(chosen, options)
    for entry in chosen:
        entry.load()  # an uninstalled backend fails here, before any weights are read
    checkpoint = None
    if artifact is None or any(backends[name].loads_from == "checkpoint" for name in CORE):
        checkpoint = load_checkpoint(artifact.source_model if artifact else model, revision=None if artifact else
                                     revision)
        if artifact:
            artifact.check_source(checkpoint)
    loader = ComponentLoader(model, backends, routed, device, revision, artifact, checkpoint)
    components = loader.load(CORE)
    components[UNET].check_finite = debug_enabled()  # every step in debug mode; final latents always
    if artifact:
        return TangoPipeline(components, artifact.tokenizer(), artifact.pipeline_config, artifact.scheduler_config,
                             artifact.ranges, loader)
    assert checkpoint is not None
    return TangoPipeline(components, checkpoint.tokenizer(), checkpoint.pipeline_config(), checkpoint.scheduler_config,
                         loader=loader)
