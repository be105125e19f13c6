"""`tango-rt check`: run each component of a model folder against the FP32 torch reference on the same inputs.

Reports max abs / rel error, cosine similarity and SNR per component and shape, and fails on NaN/Inf or on
numbers below the thresholds of the component's precision. Thresholds (see THRESHOLDS) follow from what the
precision can represent: one FP16 rounding is a relative error of at most 2^-11 (~66 dB SNR); a deep
network compounds a few dozen such roundings plus FP16 accumulation, so 30 dB (error energy 0.1% of the
signal) and cosine 0.999 flag real breakage (overflow, a wrong FP32 island) while passing healthy FP16.
INT8 dynamic quantization is coarser by design (8-bit, per-tensor scales). FP32 graphs must agree to
float32 rounding of a different kernel order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..runtime.artifacts import is_artifact, open_artifact
from ..runtime.loader import load_pipeline
from ..runtime.specs import COMPONENTS, component_specs

THRESHOLDS = {  # precision: (minimum cosine similarity, minimum SNR in dB)
    "fp32": (0.99999, 60.0),
    "fp16": (0.999, 30.0),
    "int8-dynamic": (0.99, 15.0),
}


@dataclass
class CheckRow:
    component: str
    backend: str
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
    """The tuned (opt) shape, and the smallest one when it differs (static engines have only one)."""
    opt = {k: r.opt for k, r in ranges.items()}
    low = {k: r.min for k, r in ranges.items()}
    low["latent_frames"] = max(low["latent_frames"], config.unet_downsample * 2)
    low["mel_frames"] = low["latent_frames"] * config.vae_upsample
    return [opt] if low == opt else [opt, low]


def _precision(model: str, name: str, options: dict) -> str:
    if is_artifact(model):
        return open_artifact(model).manifest["components"][name]["precision"]
    return options.get("precision") or "fp32"


def check_model(model: str, backend: str | None = None, device: str | None = None, **options: Any) -> list[CheckRow]:
    """Check every component of `model` (exported folder, or a checkpoint with e.g. precision="fp16")."""
    artifact = open_artifact(model) if is_artifact(model) else None
    if artifact:
        artifact.verify_hashes()
        formats = {entry["format"] for entry in artifact.manifest["components"].values()}
        backend = backend or ("tensorrt" if "tensorrt" in formats else "onnxruntime")
    candidate = load_pipeline(model, backend or "torch", device, **options)
    reference = load_pipeline(artifact.source_model if artifact else model, "torch", "cpu")
    config = candidate.config
    specs = component_specs(config)
    ranges = artifact.ranges if artifact else _default_ranges(config)
    rows = []
    for name in COMPONENTS:
        precision = _precision(model, name, options)
        min_cosine, min_snr = THRESHOLDS[precision]
        for dims in _shapes(ranges, config):
            feeds = specs[name].sample_inputs(dims, config, seed=1)
            metrics = compare(candidate.components[name].run(feeds), reference.components[name].run(feeds))
            passed = bool(metrics["finite"] and metrics["cosine"] >= min_cosine and metrics["snr_db"] >= min_snr)
            shape = "x".join(str(s) for s in feeds[specs[name].input_names[0]].shape)
            rows.append(CheckRow(name, candidate.components[name].backend, precision, shape, passed=passed,
                                 **metrics))
    return rows


def _default_ranges(config):
    from ..runtime.specs import ShapeProfile

    return ShapeProfile().ranges(config)


def format_rows(rows: list[CheckRow]) -> str:
    lines = ["| component | backend | precision | input shape | max abs | max rel | cosine | SNR dB | result |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        verdict = "ok" if row.passed else ("NaN/Inf" if not row.finite else "FAIL")
        lines.append(f"| {row.component} | {row.backend} | {row.precision} | {row.shape} | {row.max_abs:.2e} | "
                     f"{row.max_rel:.2e} | {row.cosine:.6f} | {row.snr_db:.1f} | {verdict} |")
    return "\n".join(lines)


def rows_as_dicts(rows: list[CheckRow]) -> list[dict]:
    return [asdict(row) for row in rows]
