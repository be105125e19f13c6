"""`tango-rt export`: the networks to ONNX (the four of generation and the VAE encoder of audio input), plus
everything the lean runtime needs (tokenizer, scheduler config, the audio front end's buffers), in one folder.

Driven by the component declarations (runtime/specs.py): the same IO names, dynamic axes and sample inputs the
runtime checks against. Export uses torch's TorchScript exporter (dynamo=False): with dynamic batch and text
length the dynamo exporter failed on this UNet (torch 2.13, diffusers 0.42), the TorchScript one works.
Tracing bakes Python shape logic into constants, so the sample inputs traced (batch 1, 7 tokens, the default
length plus one UNet downsampling block) differ in every dynamic axis from the shapes `check` runs (the
declared opt and min shapes) and from those the tests run (tests/test_onnx.py): a baked shape fails there.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

from ..runtime.artifacts import FRONT_END, SCHEDULER_FILE, TOKENIZER_DIR
from ..runtime.checkpoint import load_checkpoint
from ..runtime.config import DEFAULT_MAX_BATCH
from ..runtime.errors import ArtifactError, warn
from ..runtime.precision import EXPORT_PRECISIONS, FP16, FP32, INT8_WEIGHTS, PRECISION_POLICY, W8A8, component_precision
from ..runtime.specs import (
    COMPONENTS,
    UNET,
    UNET_SHALLOW,
    VAE_ENCODER,
    ComponentSpec,
    ShapeProfile,
    component_specs,
    dims,
)
from ..runtime.tokenizer import TOKENIZER_FILES
from ..runtime.versions import library_versions
from .attention_fusion import write_ort_graph
from .calibration import Calibration
from .check import compare, passes
from .folders import file_entry, log, prepare_output_folder, write_manifest
from .precision import compress_weights_int8, convert_to_fp16, quantize_int8, quantize_w8a8
from .shallow import extract_shallow, share_weights

DEFAULT_OPSET = 17
EXTERNAL_DATA_THRESHOLD = 1 << 30  # protobuf caps a graph at 2 GB: above 1 GB of weights, write external data
EXPORT_BATCH, EXPORT_TEXT_LEN = 1, 7  # odd sizes on purpose: see the module docstring
EXPORTER = "torch.onnx.export (TorchScript exporter, dynamo=False)"
# What this exporter writes, bumped when a folder's contents change meaning; a cached export of another revision
# is redone (revision 2: the ONNX Runtime graphs with fused attention; 3: the VAE encoder and the audio front end;
# 4: the UNet's deep feature output and its shallow branch)
EXPORT_REVISION = 4


PRECISIONS = EXPORT_PRECISIONS


def _save(model, path: Path, external: bool = False) -> None:
    """Save a ModelProto, with one external data file when the weights pass the threshold or `external` asks
    for it (then the graphs made from it, its fused twin and the shallow branch, point into that file)."""
    import onnx

    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    if external or weight_bytes > EXTERNAL_DATA_THRESHOLD:
        location = f"{path.name}.data"
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=location)
    else:
        onnx.save_model(model, str(path))


def external_files(path: Path) -> list[str]:
    """The external data files a saved graph refers to (relative to its folder)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    return sorted({ExternalDataInfo(t).location for t in model.graph.initializer if uses_external_data(t)})


def _trace(module, spec, feeds: dict, path: Path, opset: int) -> None:
    import torch

    args = tuple(torch.from_numpy(feeds[name]) for name in spec.input_names)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # TracerWarnings about Python shape checks: what the tests guard against
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes(),
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def _trace_shape(config) -> dict[str, int]:
    """The shapes traced: see the module docstring (the default length plus one UNet downsampling block)."""
    return dims(config, EXPORT_BATCH, EXPORT_TEXT_LEN, config.latent_frames + config.unet_downsample)


def export_component(module, spec, config, out: Path, precision: str, opset: int,
                     shallow: ComponentSpec | None = None) -> dict[str, dict]:
    """Trace one network to `out/<name>.onnx`, apply the precision, check it; return its manifest entry (by name).

    `fp32_nodes` in the entry counts the nodes the policy kept in FP32 (FP16) or out of quantization (INT8).
    Where ONNX Runtime can fuse attention, `ort_graph` names a second graph for it (export/attention_fusion.py).
    INT8 weight compression writes OpenVINO IR (`<name>.xml` + `.bin`) instead: only OpenVINO runs it.
    With `shallow` (the UNet's shallow branch), that network is cut out of the traced UNet graph too (see
    export/shallow.py) and gets its own entry."""
    staging = out / f".staging-{spec.name}"
    staging.mkdir()
    try:
        traced = staging / f"{spec.name}.onnx"
        shape = _trace_shape(config)
        _trace(module, spec, spec.sample_inputs(shape, config), traced, opset)
        entries = {spec.name: _finish(traced, spec, config, shape, out, precision, opset)}
        if shallow is not None:
            cut = staging / f"{shallow.name}.onnx"
            extract_shallow(traced, cut, spec, shallow)
            weights = out / entries[spec.name]["file"] if entries[spec.name]["format"] == "onnx" else None
            entries[shallow.name] = _finish(cut, shallow, config, shape, out, precision, opset, weights)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entries


def _finish(traced: Path, spec: ComponentSpec, config, shape: dict, out: Path, precision: str, opset: int,
            share_with: Path | None = None) -> dict:
    """A traced FP32 graph made into the exported network: precision applied, checked, its manifest entry. With
    `share_with` (the exported UNet graph), the network's weights that are the UNet's point into its data file."""
    actual = component_precision(precision, spec.name)
    if actual == INT8_WEIGHTS:
        target = out / f"{spec.name}.xml"
        entry = {"format": "openvino", **_ir_entries(out, target, compress_weights_int8(traced, target))}
    else:
        target = out / f"{spec.name}.onnx"
        kept = _write_onnx(traced, target, actual, spec.name)
        shared = share_weights(target, share_with) if share_with is not None and actual != "int8-dynamic" else 0
        entry = {"format": "onnx", **_onnx_entries(out, target, kept), **({"shared_weights": shared} if shared
                                                                          else {})}
        fused = _ort_graph_entry(out, target, spec.sample_inputs(shape, config), actual)
        if fused:
            entry["ort_graph"] = fused
    return {**entry, "precision": actual, "opset": opset, "inputs": [t.to_dict() for t in spec.inputs],
            "outputs": [t.to_dict() for t in spec.outputs]}


def _write_onnx(traced: Path, target: Path, actual: str, name: str) -> list[str]:
    """The ONNX graph at `actual` precision; returns the nodes the policy kept FP32 or unquantized."""
    import onnx

    if actual == "int8-dynamic":
        return quantize_int8(str(traced), str(target), name)
    if actual == W8A8:  # quantized already (_quantize): written with its float nodes counted; the UNet's
        model = onnx.load(traced)  # INT8 weights (~1/4 of FP32's) go to a data file its twin and branch share
        _save(model, target, external=name == UNET)
        return PRECISION_POLICY[name].float_nodes(node.name for node in model.graph.node)
    model, kept = convert_to_fp16(str(traced), name) if actual == FP16 else (onnx.load(traced), [])
    _save(model, target)
    return kept


def _onnx_entries(out: Path, target: Path, kept: list[str]) -> dict:
    import onnx

    onnx.checker.check_model(str(target))  # by path: external-data aware
    return {**file_entry(out, target.name), "fp32_nodes": len(kept),
            "external_data": [file_entry(out, name) for name in external_files(target)]}


def _ort_graph_entry(out: Path, target: Path, feeds: dict, precision: str) -> dict | None:
    """Write the fused-attention graph for ONNX Runtime and keep it only if it computes what the plain graph
    does on the traced inputs, within the thresholds `tango-rt check` holds this precision to: a pattern matched
    with another meaning (a custom attention scale, say) must not ship. Returns its manifest entry, or None."""
    written = write_ort_graph(target)
    if written is None:
        return None
    path, count = written
    try:
        metrics = compare(_run_cpu(path, feeds), _run_cpu(target, feeds))
        problem = None if passes(metrics, precision) else \
            f"cosine {metrics['cosine']:.6f}, {metrics['snr_db']:.1f} dB against the plain graph"
    except Exception as exc:  # onnxruntime's own exception types: the fused graph does not even run
        problem = f"it fails to run: {exc}"
    if problem:
        path.unlink()
        warn(f"{target.stem}: fused-attention graph rejected ({problem}); ONNX Runtime will run the plain graph")
        return None
    snr = metrics["snr_db"]
    return {**file_entry(out, path.name), "fused_attention": count,
            "vs_plain": {"cosine": metrics["cosine"], "snr_db": snr if snr != float("inf") else None}}


def _run_cpu(path: Path, feeds: dict):
    """One run of a graph on ONNX Runtime's CPU provider, every output flattened into one vector (the session is
    freed on return)."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([output.ravel() for output in session.run(None, feeds)])


def _ir_entries(out: Path, target: Path, compressed: int) -> dict:
    return {**file_entry(out, target.name), "compressed_weights": compressed,
            "external_data": [file_entry(out, target.with_suffix(".bin").name)]}


def _copy_text_files(checkpoint, out: Path) -> None:
    import json

    (out / TOKENIZER_DIR).mkdir()
    if checkpoint.tokenizer_dir is None:  # random weights: the toy tokenizer they run with
        from importlib import resources

        source = resources.files("tango_rt.runtime").joinpath("data/toy_tokenizer.json")
        (out / TOKENIZER_DIR / "tokenizer.json").write_bytes(source.read_bytes())
    else:
        for name in TOKENIZER_FILES:
            if (checkpoint.tokenizer_dir / name).is_file():
                shutil.copy2(checkpoint.tokenizer_dir / name, out / TOKENIZER_DIR / name)
    (out / SCHEDULER_FILE).write_text(json.dumps(checkpoint.scheduler_config, indent=2))


def export_onnx(
    model: str,
    out: str | Path,
    precision: str = FP32,
    force: bool = False,
    opset: int = DEFAULT_OPSET,
    profile: ShapeProfile | None = None,
    components: Iterable[str] = COMPONENTS,
    calibration: Calibration | None = None,
) -> Path:
    """Export a checkpoint (Hub id, folder, or random:full|tiny) to a self-contained ONNX model folder.
    `w8a8` exports FP32 first, then quantizes the UNet on trajectories those graphs sample (`calibration`:
    its prompts, seed and call count; the shipped prompts by default)."""
    calibration = (calibration or Calibration()).checked() if precision == W8A8 else None
    names = _checked_request(precision, components, calibration)
    out = Path(out)
    checkpoint = load_checkpoint(model)  # before touching `out`: a bad model must not cost the old folder
    config = checkpoint.pipeline_config()
    specs = component_specs(config)
    profile = profile or ShapeProfile()
    prepare_output_folder(out, force, inputs=[model] if Path(model).expanduser().is_dir() else [])
    log(f"exporting {model} to {out} ({precision}, opset {opset})")
    entries = _export_networks(checkpoint, config, names, specs, out, FP32 if calibration else precision, opset)
    _copy_text_files(checkpoint, out)
    front_end = _write_front_end(checkpoint, out) if VAE_ENCODER in names else None
    manifest = {
        "source": {"model": _source_reference(model), "weights_digest": checkpoint.weights_digest()},
        "pipeline": config.to_dict(),
        "shape_ranges": {k: v.to_list() for k, v in profile.ranges(config).items()},
        "precision": FP32 if calibration else precision,
        "exporter": {"method": EXPORTER, "revision": EXPORT_REVISION, "versions": library_versions(
            "torch", "transformers", "diffusers", "onnx", "onnxruntime")},
        "components": entries,
        **({FRONT_END: front_end} if front_end else {}),
    }
    write_manifest(out, manifest)
    if calibration is not None:
        write_manifest(out, _quantize(out, manifest, specs, opset, calibration))
    return out


def _export_networks(checkpoint, config, names: list[str], specs: dict[str, ComponentSpec], out: Path,
                     precision: str, opset: int) -> dict[str, dict]:
    """Each network built, traced and written at `precision` (the shallow branch with the UNet it is cut out of);
    their manifest entries by name."""
    from ..runtime.backends.torch_models import ModelBuilder

    builder, entries = ModelBuilder(checkpoint), {}
    for index, name in enumerate(names, 1):
        if name in entries:  # the shallow UNet branch, cut out of the UNet's graph with it
            continue
        started = time.perf_counter()
        log(f"[{index}/{len(names)}] {name}: building and tracing ...")
        module = builder.build([name])[name]
        shallow = specs[UNET_SHALLOW] if name == UNET and UNET_SHALLOW in names else None
        entries.update(export_component(module, specs[name], config, out, precision, opset, shallow))
        del module
        size = entries[name]["size"] + sum(e["size"] for e in entries[name]["external_data"])
        log(f"[{index}/{len(names)}] {name}: done in {time.perf_counter() - started:.1f} s, {size / 1e6:.1f} MB")
    return entries


def _quantize(out: Path, manifest: dict, specs: dict[str, ComponentSpec], opset: int,
              calibration: Calibration) -> dict:
    """The FP32 export's UNet made W8A8 (calibrated on what its graphs sample) and its shallow branch cut out of
    the quantized graph again, so both run the same INT8 ranges and weights; the decoders too when asked, each
    calibrated on the runs' ends. Returns the new manifest."""
    from ..runtime.loader import load_pipeline

    log(f"W8A8: sampling {len(calibration.prompts)} calibration prompts on the FP32 graphs ...")
    pipeline = load_pipeline(str(out), "onnxruntime", "cpu")  # the fused-attention graphs where written: faster
    feeds = calibration.feeds(pipeline)
    config = pipeline.config
    del pipeline
    shape = _trace_shape(config)
    names = [name for name in calibration.networks if name in manifest["components"]]
    for name in names:  # the FP32 graphs' fused-attention twins; the quantized ones get their own
        fused = manifest["components"][name].get("ort_graph")
        if fused:
            (out / fused["file"]).unlink()
    staging = out / ".staging-w8a8"
    staging.mkdir()
    entries: dict[str, dict] = {}
    try:
        for name in (n for n in names if n != UNET_SHALLOW):
            log(f"W8A8: quantizing {name} on {len(feeds[name])} calls ...")
            quantized = staging / f"{name}.onnx"
            _save(quantize_w8a8(out / f"{name}.onnx", name, feeds[name], calibration.alpha), quantized)
            for stale in manifest["components"][name]["external_data"]:  # the FP32 weights, read in full by now
                (out / stale["file"]).unlink(missing_ok=True)
            entries[name] = _finish(quantized, specs[name], config, shape, out, W8A8, opset)
        if UNET_SHALLOW in names:
            cut = staging / f"{UNET_SHALLOW}.onnx"
            extract_shallow(staging / f"{UNET}.onnx", cut, specs[UNET], specs[UNET_SHALLOW])
            entries[UNET_SHALLOW] = _finish(cut, specs[UNET_SHALLOW], config, shape, out, W8A8, opset,
                                            out / entries[UNET]["file"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**manifest, "precision": W8A8, "calibration": calibration.record(len(feeds[UNET])),
            "components": {**manifest["components"], **entries}}


def _checked_request(precision: str, components: Iterable[str], calibration: Calibration | None) -> list[str]:
    """The networks to export, refused before any work when the precision or a name is unknown, the shallow
    branch is asked for without the UNet it is cut out of, or W8A8 is to quantize a full network not exported
    (the shallow branch may be left out: it is cut from the quantized UNet only when exported)."""
    if precision not in PRECISIONS:
        raise ArtifactError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    names = list(components)
    unknown = set(names) - set(COMPONENTS)
    if unknown:
        raise ArtifactError(f"unknown component(s) {sorted(unknown)}; components are {list(COMPONENTS)}")
    if UNET_SHALLOW in names and UNET not in names:
        raise ArtifactError(f"{UNET_SHALLOW} is cut out of the UNet's graph: export it together with {UNET}")
    missing = [n for n in calibration.networks if n not in names and n != UNET_SHALLOW] if calibration else []
    if missing:
        raise ArtifactError(f"w8a8 quantizes {missing} too: export them (components) or leave the decoders out")
    return names


def _write_front_end(checkpoint, out: Path) -> dict:
    """The audio -> log-mel front end's buffers (from the checkpoint's pytorch_model_stft.bin, a torch file the
    lean path cannot read) as numpy arrays, with its stft config: what audio input needs besides the VAE encoder."""
    import numpy as np

    frontend = checkpoint.mel_frontend()
    name = f"{FRONT_END}.npz"
    np.savez(out / name, **frontend.arrays())
    return {**file_entry(out, name), "config": frontend.config}


def reuse_or_export(
    model: str, folder: str | Path, precision: str = FP32, components: Iterable[str] = COMPONENTS,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Path:
    """`folder` when it already holds an export of `model` at `precision` with these components, declared for
    at least `max_batch` clips per call; else a fresh export there. Benchmarks and engine builds cache with this."""
    from ..runtime.artifacts import is_artifact, open_artifact

    folder, names = Path(folder), set(components)
    if is_artifact(folder):
        artifact = open_artifact(folder)
        same = (artifact.source_model == _source_reference(model) and artifact.manifest["precision"] == precision
                and artifact.manifest.get("exporter", {}).get("revision") == EXPORT_REVISION)
        if same and names <= set(artifact.manifest["components"]) and artifact.ranges["batch"].max >= max_batch:
            return folder
    return export_onnx(model, folder, precision=precision, force=True, components=sorted(names, key=COMPONENTS.index),
                       profile=ShapeProfile(max_batch=max_batch))


def _source_reference(model: str) -> str:
    """Local folders are recorded as absolute paths so the manifest still resolves from elsewhere."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model
