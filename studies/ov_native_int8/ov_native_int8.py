"""OpenVINO's own INT8 IR of the UNet against the QDQ ONNX graph it reads from a W8A8 export: is the native form
measurably faster? (issue 23: "where OpenVINO's own quantized IR is measurably faster, ship that").

    python studies/ov_native_int8/ov_native_int8.py --fp32 FP32_EXPORT --w8a8 W8A8_EXPORT --out DIR

The native IR is made the way the export makes the QDQ graph (NNCF post-training quantization for transformers,
performance preset, SmoothQuant alpha 0.95, the same float nodes by name), but on the OpenVINO model of the FP32
UNet, calibrated on the full UNet's inputs along the fast and turbo runs of the first `--prompts` shipped prompts
(export/calibration.py). Both INT8 forms and FP32 then run one guided UNet call of a held-out prompt's trajectory,
interleaved `--rounds` times in one process; the error of each against FP32 on that call is reported beside its time.
Timing needs no trained weights (random full-size weights are what is here).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from tango_rt.benchmarks.machine import machine_info
from tango_rt.benchmarks.report import save_study
from tango_rt.export.calibration import read_prompts, record_calls, spread
from tango_rt.export.check import CHECK_PROMPT, compare
from tango_rt.export.precision import w8a8_settings
from tango_rt.runtime.loader import load_pipeline
from tango_rt.runtime.specs import UNET


def native_int8(fp32_unet: Path, feeds: list[dict]):
    """The FP32 UNet's OpenVINO model quantized by NNCF with the export's settings (`w8a8_settings`); returns it
    and how many nodes stayed float."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32_unet))
    names = [op.get_friendly_name() for op in model.get_ops()]
    settings = w8a8_settings(UNET, names)
    quantized = nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds), **settings)
    return quantized, len(settings["ignored_scope"].names)


def timed(compiled: dict, feeds: dict, rounds: int) -> dict:
    """Interleaved calls of each compiled model on one input: median seconds, and the output."""
    requests = {label: c.create_infer_request() for label, c in compiled.items()}
    for request in requests.values():
        request.infer(feeds)  # warm-up
    seconds: dict[str, list[float]] = {label: [] for label in compiled}
    for _ in range(rounds):
        for label, request in requests.items():
            started = time.perf_counter()
            request.infer(feeds)
            seconds[label].append(time.perf_counter() - started)
    outputs = {label: np.array(r.get_output_tensor(0).data, copy=True) for label, r in requests.items()}
    return {label: {"seconds": s, "median_s": statistics.median(s)} for label, s in seconds.items()}, outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", required=True, help="an FP32 export")
    parser.add_argument("--w8a8", required=True, help="a W8A8 export of the same model")
    parser.add_argument("--prompts", type=int, default=2, help="shipped prompts to calibrate the native IR on")
    parser.add_argument("--calls", type=int, default=8, help="UNet calls NNCF takes statistics over")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="studies/ov_native_int8/results")
    args = parser.parse_args(argv)
    import openvino as ov

    pipeline = load_pipeline(args.fp32, "openvino", "cpu", cache_dir="")
    calibration = [c.feeds for c in spread(record_calls(pipeline, read_prompts()[: args.prompts]), UNET, args.calls)]
    held_out = next(c.feeds for c in record_calls(pipeline, [CHECK_PROMPT], seed=7) if c.network == UNET and c.guided)
    del pipeline
    started = time.perf_counter()
    native, floats = native_int8(Path(args.fp32) / "unet.onnx", calibration)
    quantize_s = time.perf_counter() - started
    core, config = ov.Core(), {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    compiled = {"fp32": core.compile_model(str(Path(args.fp32) / "unet.onnx"), "CPU", config),
                "qdq onnx (w8a8 export)": core.compile_model(str(Path(args.w8a8) / "unet.onnx"), "CPU", config),
                "openvino native int8": core.compile_model(native, "CPU", config)}
    times, outputs = timed(compiled, held_out, args.rounds)
    rows = {label: {**times[label], **compare(outputs[label], outputs["fp32"])} for label in compiled}
    base = rows["fp32"]["median_s"]
    lines = ["| UNet (OpenVINO, one guided call, batch 2) | median s | x faster than FP32 | cosine | SNR dB |",
             "|---|---|---|---|---|"]
    lines += [f"| {label} | {r['median_s']:.2f} | {base / r['median_s']:.2f}x | {r['cosine']:.4f} | "
              f"{r['snr_db']:.1f} |" for label, r in rows.items()]
    text = "\n".join(lines) + f"\n\nNative IR: NNCF {quantize_s:.0f} s, {floats} float nodes by name.\n"
    print(text)
    save_study(Path(args.out), __file__, argv, machine_info(), {"rows": rows, "quantize_s": quantize_s,
                                                                 "float_nodes": floats, "calls": len(calibration)},
               "OpenVINO's native INT8 IR vs the QDQ ONNX", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
