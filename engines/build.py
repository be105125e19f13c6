"""`tango-rt build`: one TensorRT engine per component from an exported ONNX folder.

Precision comes from the ONNX graphs, not from this module or the precision policy: TensorRT 11 builds strongly
typed networks only (its FP16 builder flag is gone), and on TensorRT 10 we ask for strong typing too, so an
engine computes in the types its graph declares. An FP16 export (`tango-rt export --precision fp16`, which
applies runtime/precision.py) therefore gives FP16 engines that keep T5, the UNet's attention scores and
timestep embedding, and the VAE's mid-block attention in FP32, exactly as the graph says. A W8A8 export's UNet
carries QuantizeLinear / DequantizeLinear pairs: TensorRT builds it by explicit quantization (INT8 kernels where
the graph says, no INT8 builder flag and no calibrator), which takes symmetric INT8 only; the graph is checked for
that before TensorRT is imported (`check_explicit_quantization`).
Optimization profiles come from the folder's declared shape ranges, or one fixed shape with --static (what
CUDA graphs need). A timing cache makes rebuilds fast.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..export.folders import file_entry, log, prepare_output_folder, write_manifest
from ..runtime.artifacts import FRONT_END, SCHEDULER_FILE, TOKENIZER_DIR, is_artifact, open_artifact
from ..runtime.errors import ArtifactError, BackendError
from ..runtime.precision import FP16, FP32, W8A8
from ..runtime.specs import COMPONENTS, DimRange, component_specs
from .profiles import MAX_ACTIVATION_GB, check_buildable, engine_ranges, profile_shapes, static_ranges

BUILDABLE_PRECISIONS = (FP32, FP16, W8A8)


def _progress_monitor(trt: Any, component: str) -> Any:
    """TensorRT's IProgressMonitor, printing each build phase (builds take minutes)."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.depth: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.depth[phase_name] = self.depth.get(parent_phase, -1) + 1 if parent_phase else 0
            if self.depth[phase_name] <= 1:
                log(f"  {component}: {'  ' * self.depth[phase_name]}{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            self.depth.pop(phase_name, None)

    return Monitor()


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> Any:
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # ignored (always on) in TensorRT 11
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if hasattr(trt, "OnnxParserFlag") and hasattr(trt.OnnxParserFlag, "NATIVE_INSTANCENORM"):
        parser.set_flag(trt.OnnxParserFlag.NATIVE_INSTANCENORM)  # GroupNorm arrives as InstanceNormalization
    if not parser.parse_from_file(str(onnx_path)):  # by path: external data files resolve next to the graph
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    return network, parser


def apply_precision(trt: Any, config: Any, precision: str) -> None:
    """An FP32 engine computes in FP32: TensorRT enables TF32 (a 10-bit mantissa in convolutions and matrix
    products on Ampere and later) by default, strongly typed networks included, which would fail check's FP32
    thresholds and mislabel the engine. FP16 exports keep it: their FP32 islands are there for range (softmax,
    T5), where TF32's 8-bit exponent is FP32's."""
    if precision == FP32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)


def build_engine(trt, builder, logger, onnx_path: Path, shapes: dict, cache, optimization_level: int,
                 workspace_gb: float | None, component: str, precision: str) -> bytes:
    """Serialized engine of one graph with one optimization profile."""
    network, _parser = _parse(trt, builder, logger, onnx_path)
    config = builder.create_builder_config()
    apply_precision(trt, config, precision)
    config.set_timing_cache(cache, False)
    config.builder_optimization_level = optimization_level
    monitor = _progress_monitor(trt, component)  # a local reference keeps it alive for the whole build
    if hasattr(config, "progress_monitor"):
        config.progress_monitor = monitor
    if workspace_gb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError(f"TensorRT failed to build {component} from {onnx_path}; see the TensorRT log above")
    return bytes(plan)


def engine_manifest(onnx_manifest: dict, onnx_folder: Path, ranges: dict[str, DimRange], entries: dict,
                    environment: dict, static: dict | None, optimization_level: int) -> dict:
    """The engine folder's manifest fields: the ONNX folder's facts plus what TensorRT needs to refuse a mismatch."""
    return {
        "source": onnx_manifest["source"],
        "pipeline": onnx_manifest["pipeline"],
        "shape_ranges": {k: v.to_list() for k, v in ranges.items()},
        "precision": onnx_manifest["precision"],
        "tensorrt": {**environment, "static": static, "optimization_level": optimization_level},
        "built_from": {
            "folder": str(onnx_folder.resolve()),
            "onnx_sha256": {name: onnx_manifest["components"][name]["sha256"] for name in entries},
        },
        "components": entries,
        **({FRONT_END: onnx_manifest[FRONT_END]} if FRONT_END in onnx_manifest else {}),
    }


def build_engines(
    onnx: str | Path,
    out: str | Path,
    components: Iterable[str] = COMPONENTS,
    static: dict | None = None,
    timing_cache: str | Path | None = None,
    optimization_level: int = 3,
    workspace_gb: float | None = None,
    force: bool = False,
    max_batch: int | None = None,
    max_duration: float | None = None,
    max_activation_gb: float = MAX_ACTIVATION_GB,
) -> Path:
    """Build engines for `components` of the ONNX folder `onnx` into `out`; returns `out`.

    static: {"batch": B, "text_len": L, "latent_frames": F} for fixed-shape engines; else dynamic profiles up to
    `max_batch` clips and `max_duration` seconds (engines/profiles.py: 4 clips, the model's clip length), inside
    the folder's declared ranges. A profile whose worst-case activation passes `max_activation_gb` is refused
    before TensorRT is even imported.
    """
    from ..runtime.backends.cuda_runtime import CudaRuntime
    from ..runtime.backends.trt_backend import current_environment
    from ..runtime.backends.trt_compat import import_tensorrt

    onnx, out = Path(onnx), Path(out)
    artifact = open_artifact(onnx)
    ranges = _checked_ranges(artifact, onnx, static, max_batch, max_duration, max_activation_gb)
    config = artifact.pipeline_config
    trt = import_tensorrt()
    environment = current_environment(trt, CudaRuntime(0))
    specs = component_specs(config)
    names = [n for n in components if n in artifact.manifest["components"]]  # an export from before audio input
    cache_path = Path(timing_cache) if timing_cache else out / "timing.cache"
    seed = cache_path.read_bytes() if cache_path.is_file() else b""  # before --force empties `out`
    prepare_output_folder(out, force, inputs=[onnx])
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    cache = builder.create_builder_config().create_timing_cache(seed)
    log(f"timing cache: {cache_path} ({'reused, ' + str(len(seed)) + ' bytes' if seed else 'new'})")
    entries = {}
    for index, name in enumerate(names, 1):
        step = f"[{index}/{len(names)}] {name}"
        entries[name] = _build_one(trt, builder, logger, artifact, specs[name], ranges, cache, step,
                                   optimization_level, workspace_gb, out)
    cache_path.write_bytes(bytes(cache.serialize()))
    _carry_files(artifact, onnx, out)
    write_manifest(out, engine_manifest(artifact.manifest, onnx, ranges, entries, environment, static,
                                         optimization_level))
    return out


def _checked_ranges(artifact: Any, onnx: Path, static: dict | None, max_batch: int | None,
                    max_duration: float | None, max_activation_gb: float) -> dict:
    """The engines' shape ranges, refused before TensorRT is imported when the export's precision cannot be built
    or a profile's worst-case activation passes `max_activation_gb`."""
    if artifact.manifest["precision"] not in BUILDABLE_PRECISIONS:
        raise ArtifactError(f"{onnx} is a {artifact.manifest['precision']} export; TensorRT engines are built from "
                            "fp16 (recommended), fp32 or w8a8 exports: tango-rt export --precision fp16")
    config = artifact.pipeline_config
    ranges = static_ranges(config, **static) if static else engine_ranges(config, artifact.ranges, max_batch,
                                                                          max_duration)
    check_buildable(config, ranges, max_activation_gb)
    for name, entry in artifact.manifest["components"].items():
        if entry.get("precision") == W8A8:
            check_explicit_quantization(artifact.files(name, "onnx")[0])
    return ranges


def check_explicit_quantization(onnx_path: Path) -> int:
    """Refuse a quantized graph TensorRT's explicit quantization cannot take: every QuantizeLinear's and
    DequantizeLinear's zero point must be INT8 and zero (symmetric), as the W8A8 export writes them. Returns how
    many quantizers the graph has."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    points = {t.name: t for t in model.graph.initializer}
    points.update({n.output[0]: a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute
                   if a.name == "value"})
    count = 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        count += node.op_type == "QuantizeLinear"
        zero = points.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero is None:
            continue  # no zero point: 0, and the type follows the scale (INT8 when quantizing to INT8 by default)
        array = numpy_helper.to_array(zero)
        if array.dtype != np.int8 or np.any(array != 0):
            raise ArtifactError(f"{onnx_path.name}: {node.op_type} {node.name!r} has zero point "
                                f"{array.ravel()[:4].tolist()} ({array.dtype}); TensorRT takes symmetric INT8 "
                                "quantization only (int8, zero point 0), as tango-rt export --precision w8a8 writes")
    return count


def _build_one(trt: Any, builder: Any, logger: Any, artifact: Any, spec: Any, ranges: dict, cache: Any, step: str,
               optimization_level: int, workspace_gb: float | None, out: Path) -> dict:
    """One network's engine written to `out`, and its manifest entry (the profile and I/O it was built for)."""
    started = time.perf_counter()
    precision = artifact.component(spec.name, "onnx")["precision"]
    log(f"{step}: building {precision} engine ...")
    shapes = profile_shapes(spec, ranges)
    plan = build_engine(trt, builder, logger, artifact.files(spec.name, "onnx")[0], shapes, cache,
                        optimization_level, workspace_gb, spec.name, precision)
    (out / f"{spec.name}.plan").write_bytes(plan)
    entry = {
        "format": "tensorrt",
        **file_entry(out, f"{spec.name}.plan"),
        "precision": precision,
        "inputs": [t.to_dict() for t in spec.inputs],
        "outputs": [t.to_dict() for t in spec.outputs],
        "profile": {k: [list(s) for s in v] for k, v in shapes.items()},
        "build_s": round(time.perf_counter() - started, 1),
    }
    log(f"{step}: done in {entry['build_s']} s")
    return entry


def _carry_files(artifact: Any, onnx: Path, out: Path) -> None:
    """What runs beside the engines: the tokenizer, the scheduler config, the audio front end's buffers."""
    shutil.copytree(onnx / TOKENIZER_DIR, out / TOKENIZER_DIR)
    shutil.copy2(onnx / SCHEDULER_FILE, out / SCHEDULER_FILE)
    if FRONT_END in artifact.manifest:  # an export from before audio input has none
        shutil.copy2(onnx / artifact.manifest[FRONT_END]["file"], out / artifact.manifest[FRONT_END]["file"])


def reuse_or_build(onnx: Path, out: Path, **options: Any) -> Path:
    """`out` when it holds engines built from these ONNX files on this TensorRT and GPU, else a fresh build."""
    from ..runtime.backends.cuda_runtime import CudaRuntime
    from ..runtime.backends.trt_backend import current_environment
    from ..runtime.backends.trt_compat import import_tensorrt

    if is_artifact(out):
        manifest = open_artifact(out).manifest
        source = open_artifact(onnx).manifest["components"]
        built = manifest.get("built_from", {}).get("onnx_sha256", {})
        here = current_environment(import_tensorrt(), CudaRuntime(0))
        same_env = {k: manifest.get("tensorrt", {}).get(k) for k in here} == here
        if same_env and built and all(source[n]["sha256"] == digest for n, digest in built.items()):
            return out
    return build_engines(onnx, out, force=True, **options)
