"""The OpenVINO backend: the exported graphs on Intel CPUs (and, passed through, iGPUs / NPUs), without torch.

Imports only numpy and openvino. It reads the same exported folder as ONNX Runtime: ONNX graphs as they are, and
OpenVINO IR files where the export compressed weights to INT8 (`tango-rt export --precision int8-weights`).
`precision="bf16"` asks OpenVINO's CPU plugin for BF16 inference (AVX-512 BF16 / AMX units); what each compiled
network really runs is read back from OpenVINO (`effective_precision`), and asking for BF16 on a device without
it is an error instead of a silent FP32 run. A model cache folder makes the second start skip compilation.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import openvino as ov

from ..artifacts import Artifact
from ..errors import ArtifactError, BackendError
from ..specs import ComponentSpec, component_specs
from .base import Component

PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
HINTS = ("LATENCY", "THROUGHPUT")
DEFAULT_CACHE = Path.home() / ".cache" / "tango-rt" / "openvino"
OV_TYPES = {"f32": "float32", "i64": "int64", "boolean": "bool", "f16": "float16"}


def resolve_device(core: ov.Core, device: str | None) -> str:
    """tango-rt's device names (None / "cpu") or OpenVINO's ("CPU", "GPU.0", "NPU"), checked against the
    devices OpenVINO sees here."""
    name = "CPU" if device in (None, "cpu") else device.upper()
    available = core.available_devices
    if name not in available and name.split(".")[0] not in {d.split(".")[0] for d in available}:
        raise BackendError(f"OpenVINO device {device!r} is not available here (available: {available})")
    return name


def compile_config(core: ov.Core, device: str, precision: str, threads: int | None, streams: int | None,
                   hint: str, cache_dir: str | None) -> dict:
    if precision not in PRECISIONS:
        raise BackendError(f"openvino precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if hint.upper() not in HINTS:
        raise BackendError(f"openvino performance_hint must be one of {HINTS}, got {hint!r}")
    if precision == "bf16":
        capabilities = core.get_property(device, "OPTIMIZATION_CAPABILITIES")
        if "BF16" not in capabilities:
            raise BackendError(f"OpenVINO {device} has no BF16 support here (capabilities {list(capabilities)}): "
                               "this CPU lacks AVX-512 BF16 / AMX; use precision='fp32'")
    config = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "PERFORMANCE_HINT": hint.upper()}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if streams:
        config["NUM_STREAMS"] = int(streams)
    if cache_dir != "":
        folder = Path(cache_dir) if cache_dir else DEFAULT_CACHE
        folder.mkdir(parents=True, exist_ok=True)
        config["CACHE_DIR"] = str(folder)
    return config


def check_model_io(model, spec: ComponentSpec, path: Path) -> None:
    """The graph must expose exactly the declared inputs and outputs: else it is stale or foreign."""
    got = {p.get_any_name(): OV_TYPES.get(p.get_element_type().get_type_name(), p.get_element_type().get_type_name())
           for p in [*model.inputs, *model.outputs]}
    want = {t.name: t.dtype for t in [*spec.inputs, *spec.outputs]}
    if got != want:
        raise ArtifactError(f"{path}: graph IO {got} does not match the {spec.name} declaration {want}; "
                            "re-export with `tango-rt export --force`")


class OpenVINOComponent(Component):
    backend = "openvino"

    def __init__(self, spec: ComponentSpec, compiled, ranges, precision: str):
        super().__init__(spec, ranges)
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.effective_precision = precision

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        self.request.infer({name: np.ascontiguousarray(array) for name, array in feeds.items()})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32, copy=True)


def _effective(compiled) -> str:
    """The inference precision the compiled network really uses, as OpenVINO reports it."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(name, name)


def load_components(
    artifact: Artifact,
    names: Iterable[str],
    device: str | None = None,
    precision: str = "fp32",
    threads: int | None = None,
    streams: int | None = None,
    performance_hint: str = "LATENCY",
    cache_dir: str | None = None,
) -> dict[str, Component]:
    """Compile each network (ONNX, or IR where the export compressed weights) for the device."""
    core = ov.Core()
    target = resolve_device(core, device)
    config = compile_config(core, target, precision, threads, streams, performance_hint, cache_dir)
    specs = component_specs(artifact.pipeline_config)
    components: dict[str, Component] = {}
    for name in names:
        fmt = artifact.manifest["components"].get(name, {}).get("format", "onnx")
        path = artifact.files(name, "openvino" if fmt == "openvino" else "onnx")[0]
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses for corrupt or foreign graphs
            raise ArtifactError(f"OpenVINO cannot read {path}: {exc}") from None
        check_model_io(model, specs[name], path)
        compiled = core.compile_model(model, target, config)
        weights = artifact.manifest["components"][name].get("precision", "fp32")
        effective = _effective(compiled)
        label = effective if weights == "fp32" else f"{weights}+{effective}"
        components[name] = OpenVINOComponent(specs[name], compiled, artifact.ranges, label)
    return components
