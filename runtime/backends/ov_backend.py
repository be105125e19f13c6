"""The OpenVINO backend: the exported graphs on Intel CPUs (and, passed through, iGPUs / NPUs), without torch.

Imports only numpy and openvino. It reads the same exported folder as ONNX Runtime: ONNX graphs as they are, and
OpenVINO IR files where the export compressed weights to INT8 (`tango-rt export --precision int8-weights`).
`precision="bf16"` asks OpenVINO's CPU plugin for BF16 inference (AVX-512 BF16 / AMX units) for every network the
precision policy does not keep in FP32 (T5 stays FP32: it produced NaN in BF16 with the full-size random weights
here); what each compiled network really runs is read back from OpenVINO (`effective_precision`), and asking for
BF16 on a device without it is an error instead of a silent FP32 run. A model cache folder makes the second start
skip compilation.

Static shapes: with `static_shapes=True` (the default under BF16) each network is compiled for the exact input
shapes it meets, read afresh from disk and cached per shape (the `MAX_SHAPES` most recent), instead of once with
dynamic shapes. OpenVINO 2026.4's CPU plugin crashed (SIGSEGV) running the full-size UNet in BF16 with dynamic
shapes on an AMX CPU here, and ran it correctly once reshaped to static shapes; the loop keeps one shape for a
whole generation, so this costs one compile (~3 s for the UNet) per new shape, and the cache folder keeps it
across processes. Prompt lengths are padded to a multiple of TEXT_BUCKET tokens (masked out), so a server seeing
prompts of every length compiles once per bucket, not once per length. W8A8 decoders (`export --w8a8-decoders`)
are static by default too: OpenVINO 2026.4's dynamic-shape INT8 kernels returned all zeros for the full-size
vocoder here (random weights, outputs ~1e-6) where its static ones and ONNX Runtime agree with FP32 to 19-20 dB;
a decoder meets one shape per clip length, so this costs one compile per length.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import openvino as ov

from ..artifacts import Artifact
from ..errors import ArtifactError, BackendError
from ..precision import BF16, FP16, FP32, PRECISION_POLICY, W8A8, W8A8_DECODERS
from ..specs import ComponentSpec, component_specs
from .base import Component, Outputs

PRECISIONS = {FP32: "f32", BF16: "bf16"}  # our name -> OpenVINO's type name
HINTS = ("LATENCY", "THROUGHPUT")
DEFAULT_CACHE = Path.home() / ".cache" / "tango-rt" / "openvino"
OV_TYPES = {"f32": "float32", "i64": "int64", "boolean": "bool", "f16": "float16"}
MAX_SHAPES = 2  # compiled static-shape networks kept per component: each holds its own repacked weights
TEXT_BUCKET = 16  # static shapes: prompt lengths are padded to a multiple of this, so one compile serves 16 lengths


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
    if precision == BF16:
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
    """One network: a dynamic-shape compiled model, or static-shape ones compiled per input shape on demand."""

    backend = "openvino"

    def __init__(self, spec: ComponentSpec, core: ov.Core, model: ov.Model, path: Path, device: str, config: dict,
                 ranges, weights: str, static_shapes: bool):
        """`model` is the graph read (and checked) from `path`: compiled as it is with dynamic shapes; static
        shapes read `path` afresh for each shape, since reshaping changes the model."""
        super().__init__(spec, ranges)
        self.core, self.path, self.device, self.config = core, path, device, config
        self.weights, self.static_shapes = weights, static_shapes
        self.compiled: OrderedDict[tuple, tuple] = OrderedDict()
        if not static_shapes:
            self.compiled[()] = self._compile(None, model)

    def _compile(self, shapes: dict | None, model: ov.Model | None = None) -> tuple:
        model = model or self.core.read_model(str(self.path))
        if shapes:
            model.reshape({name: list(shape) for name, shape in shapes.items()})
        compiled = self.core.compile_model(model, self.device, self.config)
        return compiled, compiled.create_infer_request()

    def _request(self, shapes: dict) -> ov.InferRequest:
        key = () if not self.static_shapes else tuple(tuple(shapes[n]) for n in self.spec.input_names)
        if key not in self.compiled:
            self.compiled[key] = self._compile(shapes)
            while len(self.compiled) > MAX_SHAPES:
                self.compiled.popitem(last=False)
        self.compiled.move_to_end(key)
        return self.compiled[key][1]

    @property
    def effective_precision(self) -> str:
        """What OpenVINO compiled this network to run at; with static shapes, before its first run, what was asked
        (a device without it refused the ask when loading)."""
        if self.compiled:
            effective = _effective(next(reversed(self.compiled.values()))[0])
        else:
            effective = _ours(self.config["INFERENCE_PRECISION_HINT"])
        return effective if self.weights == FP32 else f"{self.weights}+{effective}"

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> Outputs:
        feeds, length = self._pad_text(feeds) if self.static_shapes else (feeds, None)
        request = self._request({name: array.shape for name, array in feeds.items()})
        request.infer({name: np.ascontiguousarray(array) for name, array in feeds.items()})
        arrays = []
        for name in outputs:  # by name: outputs of one shape (the VAE encoder's) in another order must not swap
            tensor = self.spec.outputs[self.spec.output_names.index(name)]
            output = np.array(request.get_tensor(name).data, dtype=np.float32, copy=True)
            axis = _axis(tensor, "text_len")
            arrays.append(output if length is None or axis is None else np.take(output, range(length), axis=axis))
        return arrays[0] if len(arrays) == 1 else tuple(arrays)

    def _pad_text(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int | None]:
        """Static shapes compile once per input shape, and every prompt length would be a new shape: pad the text
        axis with zeros (padding tokens, mask 0: masked out, so real positions compute the same) up to a multiple
        of TEXT_BUCKET, within the declared range. Returns the feeds and the real length (None: nothing padded)."""
        axes = {t.name: _axis(t, "text_len") for t in self.spec.inputs}
        length = next((feeds[name].shape[a] for name, a in axes.items() if a is not None), None)
        if length is None:
            return feeds, None
        limit = self.ranges["text_len"].max if self.ranges and "text_len" in self.ranges else length
        bucket = max(length, min(-(-length // TEXT_BUCKET) * TEXT_BUCKET, limit))
        if bucket == length:
            return feeds, None
        padded = {name: array if axes[name] is None else
                  np.pad(array, [(0, bucket - length if i == axes[name] else 0) for i in range(array.ndim)])
                  for name, array in feeds.items()}
        return padded, length


def _axis(tensor, dim: str) -> int | None:
    """The position of a symbolic dimension in a declared tensor shape, if it has it."""
    return tensor.shape.index(dim) if dim in tensor.shape else None


def _effective(compiled) -> str:
    """The inference precision the compiled network really uses, as OpenVINO reports it."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    return _ours(value.get_type_name() if hasattr(value, "get_type_name") else str(value))


def _ours(type_name: str) -> str:
    """Our name for an OpenVINO element type name ("f32" -> "fp32"); an unknown one as it is."""
    return {"f32": FP32, "bf16": BF16, "f16": FP16}.get(type_name, type_name)


def load_components(
    artifact: Artifact,
    names: Iterable[str],
    device: str | None = None,
    precision: str = FP32,
    threads: int | None = None,
    streams: int | None = None,
    performance_hint: str = "LATENCY",
    cache_dir: str | None = None,
    static_shapes: bool | None = None,
    loaded: Mapping[str, Component] | None = None,
) -> dict[str, Component]:
    """Compile each network (ONNX, or IR where the export compressed weights) for the device."""
    core = ov.Core()
    target = resolve_device(core, device)
    specs = component_specs(artifact.pipeline_config)
    configs = {p: compile_config(core, target, p, threads, streams, performance_hint, cache_dir)
               for p in {FP32, precision}}
    components: dict[str, Component] = {}
    for name in names:
        entry = artifact.manifest["components"].get(name, {})
        path = artifact.files(name, "openvino" if entry.get("format") == "openvino" else "onnx")[0]
        island = PRECISION_POLICY[name].whole_graph_fp32  # the policy's FP32 networks stay FP32 under BF16
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses for corrupt or foreign graphs
            raise ArtifactError(f"OpenVINO cannot read {path}: {exc}") from None
        check_model_io(model, specs[name], path)
        components[name] = OpenVINOComponent(specs[name], core, model, path, target,
                                             configs[FP32 if island else precision], artifact.ranges,
                                             entry.get("precision", FP32),
                                             _static(name, entry.get("precision", FP32), precision, static_shapes))
        del model
    return components


def _static(name: str, exported: str, precision: str, asked: bool | None) -> bool:
    """Static shapes where asked, else under BF16 and for W8A8 decoders (the module's docstring says why)."""
    if asked is not None:
        return bool(asked)
    return precision == BF16 or (exported == W8A8 and name in W8A8_DECODERS)
