"""The W8A8 UNet against the FP32 one at full size on a CPU: whole generations of a preset, interleaved in one
process per backend, so each ratio is of one run on one machine.

    tango-rt export --model random:full --out full-fp32
    tango-rt export --model random:full --out full-w8a8 --precision w8a8
    python studies/w8a8_cpu/w8a8_cpu.py --fp32 full-fp32 --w8a8 full-w8a8 --out studies/w8a8_cpu/results

With `--w8a8-decoders FOLDER` (an export made with `--precision w8a8 --w8a8-decoders`) a third model joins the
same rounds: what quantizing the VAE decoder and vocoder adds on top of the W8A8 UNet. With `--fp32-preset fast`
the FP32 model runs another preset than the others (issue 23's ratio: the fast preset in float over turbo on INT8).

Timing needs no trained weights (random full-size weights; quality is judged on the trained oracle in
studies/turbo). Per backend, both folders are loaded, each generates once to warm up (first calls compile and
allocate), then they alternate `--rounds` times; each time is one `Tango.generate` call, end to end, with every
network's calls timed inside it (runtime/instrument.py). Peak private memory is the process's, per backend, so
only the whole-run figure is kept (both pipelines are resident).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

from tango_rt.benchmarks.machine import machine_info
from tango_rt.benchmarks.report import save_study
from tango_rt.runtime.instrument import Recorder, instrument
from tango_rt.runtime.presets import PRESETS
from tango_rt.runtime.tango import Tango

PROMPT = "An audience cheering and clapping"


def measure(models: dict[str, Tango], presets: dict[str, str], rounds: int) -> dict:
    """Median seconds per generation and per network call of each model (with its preset), interleaved."""
    recorders = {}
    for label, tango in models.items():
        recorders[label] = Recorder()
        instrument(tango.pipeline, recorders[label])
        tango.generate(PROMPT, seed=0, **PRESETS[presets[label]])  # warm-up
    times: dict[str, list[float]] = {label: [] for label in models}
    for index in range(rounds):
        for label, tango in models.items():
            recorders[label].reset()
            started = time.perf_counter()
            tango.generate(PROMPT, seed=index + 1, **PRESETS[presets[label]])
            times[label].append(time.perf_counter() - started)
    return {label: {"seconds": values, "median_s": statistics.median(values),
                    "calls": {stage: {"n": len(v), "median_s": statistics.median(v), "total_s": sum(v)}
                              for stage, v in recorders[label].calls.items()}}
            for label, values in times.items()}


STAGES = ("unet_step", "unet_shallow", "vae_decoder", "vocoder")
DECODERS = "w8a8-decoders"  # the label of the model whose decoders are quantized too


def ratios(result: dict, label: str = "w8a8") -> dict:
    """FP32 over `label`: whole generation, and each network's median call."""
    fp32, other = result["fp32"], result[label]
    out = {"generation": fp32["median_s"] / other["median_s"]}
    for stage in STAGES:
        if stage in fp32["calls"] and stage in other["calls"]:
            out[stage] = fp32["calls"][stage]["median_s"] / other["calls"][stage]["median_s"]
    return out


def table(results: dict, presets: dict[str, str], audio_s: float) -> str:
    named = ", ".join(f"{label}: {preset}" for label, preset in presets.items())
    lines = [f"One {audio_s:.2f} s generation, presets ({named}), median of interleaved rounds:", "",
             "| backend | model | generation s | RTF | full UNet call s | shallow call s | vocoder s | VAE decoder s "
             "| x faster than fp32 (generation / full / shallow / vocoder / VAE) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for backend, result in results.items():
        for label, row in result.items():
            speed = ratios(result, label)
            gain = "" if label == "fp32" else " / ".join(f"{speed.get(k, float('nan')):.2f}x" for k in
                                                         ("generation", "unet_step", "unet_shallow", "vocoder",
                                                          "vae_decoder"))
            lines.append(f"| {backend} | {label} | {row['median_s']:.2f} | {audio_s / row['median_s']:.2f} | "
                         f"{_cell(row, 'unet_step')} | {_cell(row, 'unet_shallow')} | {_cell(row, 'vocoder')} | "
                         f"{_cell(row, 'vae_decoder')} | {gain} |")
    return "\n".join(lines)


def _cell(row: dict, stage: str) -> str:
    return f"{row['calls'][stage]['median_s']:.2f}" if stage in row["calls"] else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fp32", required=True, help="an FP32 export (tango-rt export)")
    parser.add_argument("--w8a8", required=True, help="a W8A8 export of the same model")
    parser.add_argument("--w8a8-decoders", default=None, help="a W8A8 export with its decoders quantized too")
    parser.add_argument("--backends", default="onnxruntime,openvino")
    parser.add_argument("--preset", default="turbo", choices=list(PRESETS))
    parser.add_argument("--fp32-preset", default=None, choices=list(PRESETS),
                        help="the FP32 model's preset (default: --preset)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="studies/w8a8_cpu/results")
    args = parser.parse_args(argv)
    machine, results = machine_info(), {}
    for backend in args.backends.split(","):
        options = {"cache_dir": ""} if backend == "openvino" else {}
        folders = {"fp32": args.fp32, "w8a8": args.w8a8, **({DECODERS: args.w8a8_decoders} if args.w8a8_decoders
                                                             else {})}
        models = {label: Tango(folder, backend=backend, **options) for label, folder in folders.items()}
        audio_s = models["fp32"].pipeline.config.duration()
        presets = {label: args.preset for label in models} | {"fp32": args.fp32_preset or args.preset}
        results[backend] = measure(models, presets, args.rounds)
        print(f"{backend}: {[ratios(results[backend], label) for label in list(folders)[1:]]}", file=sys.stderr)
        del models
        gc.collect()
    text = table(results, presets, audio_s)
    save_study(Path(args.out), __file__, argv, machine, {"presets": presets, "backends": results},
               "W8A8 UNet on a CPU", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
