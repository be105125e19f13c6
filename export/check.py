"""`tango-rt check`: run each component of a model folder against the FP32 torch reference on the same inputs.

Reports max abs / rel error, cosine similarity and SNR per component and shape, and fails on NaN/Inf or on
numbers below the thresholds of the component's precision. Thresholds (THRESHOLDS) follow from what each
precision can represent, independent of the CPU or GPU that runs it:
- fp32: another kernel order moves a length-K reduction by ~sqrt(K) * 2^-24 relative; over the deepest full-size
  path (K <= 1e4, ~100 layers) that is < 1e-4 relative RMS error, i.e. SNR > 80 dB: 60 dB (and cosine 0.99999)
  leaves a 10x margin in amplitude and still flags a wrong op, which costs tens of dB.
- fp16: one FP16 rounding is a relative error of at most 2^-11 (~66 dB); a deep network compounds a few dozen
  such roundings plus FP16 accumulation, so 30 dB (error energy 0.1% of the signal) and cosine 0.999 flag real
  breakage (overflow, a missing FP32 island) while passing healthy FP16.
- int8-dynamic: 8-bit weights and activations round to 1/254 of each tensor's range (~48 dB for one tensor);
  compounded over the UNet's quantized MatMuls that leaves ~20-30 dB: 15 dB and cosine 0.99 flag breakage.
- bf16 and int8-weights keep 8 significant bits, like int8-dynamic: BF16 rounds every operand to 2^-9 relative,
  per-channel INT8 weights to 1/255 of each channel's range. They get the same bounds (15 dB, cosine 0.99): a
  deep network compounds those roundings to ~20-35 dB (random tiny weights, which cancel more than trained
  ones, are the low end), while breakage (overflow, a missing FP32 island, wrong scales) falls below 10 dB.
  A network run with both (int8-weights+bf16) takes the looser of each bound.
- w8a8: weights per output channel and activations per tensor in 8 bits, as int8-dynamic, but with activation
  ranges fixed by calibration instead of measured per call, so a value outside its calibrated range is clipped
  as well as rounded: one tensor's rounding is ~35-48 dB (the crest factor of an activation costs up to ~13 dB of
  the 48), and the compounding over the UNet's ~200 quantized GEMMs and convolutions, with the residual paths
  averaging part of it away, leaves ~20-30 dB on inputs like the calibration's. 15 dB and cosine 0.99, the bound
  of the other 8-bit precisions, flag breakage (a wrong scale or zero point, a range calibrated on other data,
  a quantized softmax) which costs more than 10 dB. The inputs must be a real trajectory's (see
  `_trajectory`): random embeddings far outside the calibrated ranges would be clipped by design.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..runtime.artifacts import is_artifact, open_artifact
from ..runtime.backends.registry import backend_for_format, get_backend
from ..runtime.errors import InputError
from ..runtime.loader import load_pipeline
from ..runtime.precision import BF16, FP16, FP32, INT8_WEIGHTS, W8A8, W8A8_DECODERS
from ..runtime.specs import COMPONENTS, ShapeProfile, component_specs, dims

THRESHOLDS = {  # precision: (minimum cosine similarity, minimum SNR in dB)
    FP32: (0.99999, 60.0),
    FP16: (0.999, 30.0),
    "int8-dynamic": (0.99, 15.0),
    BF16: (0.99, 15.0),
    INT8_WEIGHTS: (0.99, 15.0),
    W8A8: (0.99, 15.0),
}


def thresholds(precision: str) -> tuple[float, float]:
    """(minimum cosine, minimum SNR dB) of a precision label; "a+b" labels take the looser of each."""
    parts = [THRESHOLDS[p] for p in precision.split("+")]
    return min(p[0] for p in parts), min(p[1] for p in parts)


def passes(metrics: dict, precision: str) -> bool:
    """Whether error metrics (`compare`) meet the thresholds of a precision: finite, cosine and SNR high enough."""
    min_cosine, min_snr = thresholds(precision)
    return bool(metrics["finite"] and metrics["cosine"] >= min_cosine and metrics["snr_db"] >= min_snr)


@dataclass
class CheckRow:
    component: str
    backend: str
    graph: str  # the graph file an ONNX Runtime component ran, "-" elsewhere
    precision: str
    shape: str
    max_abs: float
    max_rel: float
    cosine: float
    snr_db: float
    finite: bool
    passed: bool


def compare(output: np.ndarray, reference: np.ndarray) -> dict[str, float | bool]:
    """Error metrics of `output` against `reference` (float64 arithmetic)."""
    out, ref = output.astype(np.float64).ravel(), reference.astype(np.float64).ravel()
    finite = bool(np.isfinite(out).all())
    if not finite:
        return {"max_abs": float("nan"), "max_rel": float("nan"), "cosine": float("nan"), "snr_db": float("nan"),
                "finite": False}
    error = out - ref
    noise = float(np.sum(error**2))
    signal = float(np.sum(ref**2))
    norms = np.linalg.norm(out) * np.linalg.norm(ref)
    return {
        "max_abs": float(np.abs(error).max()),
        "max_rel": float(np.abs(error).max() / max(np.abs(ref).max(), 1e-30)),
        "cosine": float(np.dot(out, ref) / norms) if norms > 0 else 1.0,
        "snr_db": float("inf") if noise == 0 else 10 * np.log10(signal / noise) if signal > 0 else float("-inf"),
        "finite": True,
    }


def _shapes(ranges: dict, config) -> list[dict[str, int]]:
    """The tuned (opt) shape, and a small one when the ranges allow it (static engines have only one)."""
    opt = {k: r.opt for k, r in ranges.items()}
    frames = max(ranges["latent_frames"].min, 2 * config.unet_downsample)
    low = dims(config, ranges["batch"].min, ranges["text_len"].min, frames, guided=ranges["cfg_batch"].min == 1)
    fits = all(ranges[k].check(v) is None for k, v in low.items())
    return [opt, low] if fits and low != opt else [opt]


def _precision(model: str, name: str, component, options: dict) -> str:
    """What the network ran at: the backend's read-back where it has one, else the export's or the option."""
    if getattr(component, "effective_precision", None):
        return component.effective_precision
    if is_artifact(model):
        return open_artifact(model).manifest["components"][name]["precision"]
    return options.get("precision") or FP32


def check_model(model: str, backend: str | None = None, device: str | None = None,
                components: Sequence[str] | None = None, **options: Any) -> list[CheckRow]:
    """Check every component of `model` (exported folder, or a checkpoint with e.g. precision="fp16"), or those
    named in `components`.

    An export run by ONNX Runtime holds two graphs where attention was fused (`<name>.ort.onnx`, what the CPU
    provider runs, and the plain `<name>.onnx`, what the other backends read): both are checked, unless the
    `fused_attention` option picks one."""
    artifact = open_artifact(model) if is_artifact(model) else None
    if artifact:
        artifact.verify_hashes()
        formats = [entry["format"] for entry in artifact.manifest["components"].values()]
        backend = backend or backend_for_format(formats[0]).name
    backend = get_backend(backend or "torch").name
    names = [n for n in COMPONENTS if artifact is None or n in artifact.manifest["components"]]
    if components is not None:  # refused before the reference's weights are read
        unknown = sorted(set(components) - set(names))
        if unknown:
            raise InputError(f"no component(s) {unknown} to check in {model}; it has {names}")
        names = [n for n in names if n in components]
    reference = load_pipeline(artifact.source_model if artifact else model, "torch", "cpu")
    fused = artifact and backend == "onnxruntime" and "fused_attention" not in options and any(
        "ort_graph" in entry for entry in artifact.manifest["components"].values())
    ranges = artifact.ranges if artifact else ShapeProfile().ranges(reference.config)
    quantized = {n for n in names if artifact and artifact.manifest["components"][n].get("precision") == W8A8}
    # sampled only when a checked network needs it, decoded only when a decoder does
    trajectory = _trajectory(reference, decode=bool(quantized & set(W8A8_DECODERS))) if quantized else None
    rows, checked = [], set()
    for extra in ({"fused_attention": True}, {"fused_attention": False}) if fused else ({},):
        candidate = load_pipeline(model, backend, device, **options, **extra)
        for name in names:  # the core networks and those loaded on first use (the VAE encoder)
            component = candidate.component(name)
            graph = getattr(component, "graph", None)
            if (name, graph) not in checked:
                checked.add((name, graph))
                precision = _precision(model, name, component, options)
                cases = _trajectory_cases(trajectory, name) if W8A8 in precision else \
                    _shape_cases(name, ranges, candidate.config)
                rows += _check_component(name, component, reference.component(name), precision, cases)
    return rows


CHECK_PROMPT = "Thunder rolls over a valley as rain begins to fall"  # in no calibration set: held out
TRAJECTORY_CALLS = 4  # per network: spread over a fast and a turbo run, guided and unguided calls among them


def _trajectory(reference, decode: bool) -> list:
    """The UNet calls of one fast and one turbo run of a held-out prompt on the torch reference, and with `decode`
    the decoders' calls on their ends: the inputs a quantized network is judged on (its ranges were calibrated for
    inputs like these, not for random tensors)."""
    from .calibration import record_calls

    return record_calls(reference, [CHECK_PROMPT, CHECK_PROMPT], seed=7, decode=decode)


def _trajectory_cases(calls: list, name: str) -> list[tuple[str, dict]]:
    from .calibration import spread

    return [(call.label, call.feeds) for call in spread(calls, name, TRAJECTORY_CALLS)]


def _shape_cases(name: str, ranges, config) -> list[tuple[str, dict]]:
    spec = component_specs(config)[name]
    cases = []
    for shape in _shapes(ranges, config):
        feeds = spec.sample_inputs(shape, config, seed=1)
        cases.append(("x".join(str(s) for s in feeds[spec.input_names[0]].shape), feeds))
    return cases


def _check_component(name: str, component, reference, precision: str, cases: list[tuple[str, dict]]
                     ) -> list[CheckRow]:
    """One component against the torch reference on each case: (label, feeds)."""
    component.check_finite = False  # NaN / Inf is reported as a failed row, not raised
    rows = []
    for label, feeds in cases:
        metrics = compare_outputs(component(**feeds), reference(**feeds))
        passed = passes(metrics, precision)
        rows.append(CheckRow(name, component.backend, getattr(component, "graph", None) or "-", precision, label,
                             passed=passed, **metrics))
    return rows


def compare_outputs(outputs, references) -> dict[str, float | bool]:
    """`compare` for a network with one output or several (the VAE encoder's mean and log-variance): each output
    on its own, the worst of each metric kept, so a wrong output cannot hide behind a right one's energy."""
    if not isinstance(outputs, tuple):
        return compare(outputs, references)
    each = [compare(o, r) for o, r in zip(outputs, references, strict=True)]
    worst = {key: max(m[key] for m in each) for key in ("max_abs", "max_rel")}
    worst.update({key: min(m[key] for m in each) for key in ("cosine", "snr_db")})
    return {**worst, "finite": all(m["finite"] for m in each)}


def format_rows(rows: list[CheckRow]) -> str:
    lines = ["| component | backend | graph | precision | input shape | max abs | max rel | cosine | SNR dB | result |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        verdict = "ok" if row.passed else ("NaN/Inf" if not row.finite else "FAIL")
        lines.append(f"| {row.component} | {row.backend} | {row.graph} | {row.precision} | {row.shape} | "
                     f"{row.max_abs:.2e} | {row.max_rel:.2e} | {row.cosine:.6f} | {row.snr_db:.1f} | {verdict} |")
    return "\n".join(lines)
