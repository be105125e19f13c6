"""Is a TensorRT engine folder usable here? Engines are tied to the TensorRT version and the GPU they were built
with; a mismatch must be a clear refusal with the rebuild command, not a deserialization crash."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import PipelineConfig
from ..errors import ArtifactError, BackendError


def rebuild_command(manifest: Mapping[str, Any], folder: str) -> str:
    onnx = manifest.get("built_from", {}).get("folder", "<exported ONNX folder>")
    static = manifest.get("tensorrt", {}).get("static")
    ranges = manifest.get("shape_ranges", {})
    extra = ""
    if static:
        extra = f" --static --batch {static['batch']} --text-len {static['text_len']}"
    elif "batch" in ranges and "latent_frames" in ranges and "pipeline" in manifest:
        seconds = PipelineConfig.from_dict(manifest["pipeline"]).duration(ranges["latent_frames"][2])
        extra = f" --max-batch {ranges['batch'][2]} --max-duration {seconds:.2f}"
    return f"tango-rt build --onnx {onnx} --out {folder} --force{extra}"


def check_environment(manifest: Mapping[str, Any], environment: Mapping[str, str], folder: str) -> None:
    """Refuse engines from another TensorRT version or GPU architecture; warn on another GPU of the same one."""
    built = manifest.get("tensorrt")
    if not built:
        raise ArtifactError(f"{folder}: manifest has no 'tensorrt' section: not a TensorRT engine folder")
    fix = f"rebuild the engines on this machine: {rebuild_command(manifest, folder)}"
    if built["version"] != environment["version"]:
        raise ArtifactError(
            f"{folder}: engines were built with TensorRT {built['version']}, this machine has "
            f"{environment['version']}; TensorRT engines only load in the version that built them: {fix}"
        )
    if built["compute_capability"] != environment["compute_capability"]:
        raise ArtifactError(
            f"{folder}: engines were built for {built['gpu']} (compute capability {built['compute_capability']}), "
            f"this GPU is {environment['gpu']} ({environment['compute_capability']}): {fix}"
        )
    if built["gpu"] != environment["gpu"]:
        warnings.warn(
            f"{folder}: engines were tuned on {built['gpu']}, running on {environment['gpu']} (same architecture): "
            f"they work but may be slower; {fix}",
            stacklevel=2,
        )


def check_onnx_source(manifest: Mapping[str, Any], folder: str) -> None:
    """Engines older than the ONNX graphs they were built from (re-exported since) are stale: refuse them.
    Engine folders are self-contained, so a source folder that is gone is no objection."""
    built = manifest.get("built_from", {})
    source = Path(built.get("folder", "")) / "manifest.json"
    if not built or not source.is_file():
        return
    current = json.loads(source.read_text()).get("components", {})
    stale = [name for name, digest in built.get("onnx_sha256", {}).items()
             if name in current and current[name].get("sha256") != digest]
    if stale:
        raise ArtifactError(
            f"{folder}: the engines for {stale} were built from ONNX graphs that have since changed in "
            f"{source.parent}; rebuild them: {rebuild_command(manifest, folder)}"
        )


MIN_TENSORRT = (10, 1)  # device_memory_size_v2 and set_device_memory(ptr, size) arrived in 10.1


def check_tensorrt_version(version: str) -> None:
    """Refuse a TensorRT older than the APIs the backend calls, before anything fails deep inside a load."""
    try:
        found = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return  # a development build's version string: let it try
    if found < MIN_TENSORRT:
        need = ".".join(map(str, MIN_TENSORRT))
        raise BackendError(f"TensorRT {version} is too old: tango-rt needs >= {need} "
                           f"(pip install 'tensorrt>={need}')")


def import_tensorrt() -> Any:
    """The tensorrt module, checked: installed and new enough."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendError(f"TensorRT is not installed ({exc}): pip install 'tango-rt[tensorrt]'") from None
    check_tensorrt_version(tensorrt.__version__)
    return tensorrt
