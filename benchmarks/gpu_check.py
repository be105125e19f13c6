"""One GPU check run: per-stage latency and peak memory of every GPU path, full-size Tango, one table.

    python -m tango_rt.benchmarks.gpu_check --out benchmarks/results/gpu_check      # about 3-6 min on an H100

Random weights of the real architecture (timing needs no trained weights), built once on the CPU and moved /
cast in place for each variant: torch FP32 (the original's numerics), torch FP16, torch FP16 + CUDA graph of
the UNet, and ONNX Runtime CUDA / TensorRT when installed (their exports and engine builds take minutes: opt
in with --exported). Each variant: one warm-up generation, then `--repeat` timed ones of `--steps` DDIM steps
at batch 1; the 100-step latency is extrapolated from the per-stage medians. Also checks numerics: the FP16
UNet's SNR against FP32 on the same input. `--size tiny --device cpu` is a smoke test for machines without a GPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import numpy as np

from ..export.check import compare
from ..runtime.checkpoint import load_checkpoint
from ..runtime.noise import NoiseSource
from ..runtime.pipeline import TangoPipeline
from ..runtime.schedulers import make_scheduler
from ..runtime.specs import UNET, component_specs
from .bench import PROMPT
from .instrument import STAGES, Recorder, instrument
from .machine import machine_info
from .stats import summarize

TORCH_VARIANTS = {  # name: (precision, cuda_graph)
    "torch fp32": ("fp32", False),
    "torch fp16": ("fp16", False),
    "torch fp16 + CUDA graph": ("fp16", True),
}


def _cuda_memory(torch, device) -> dict:
    if device.type != "cuda":
        return {}
    free, total = torch.cuda.mem_get_info(device)
    return {"peak_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20,
            "device_used_mb": (total - free) / 2**20}


def measure(pipeline: TangoPipeline, steps: int, repeat: int) -> dict:
    recorder = Recorder()
    instrument(pipeline, recorder)
    e2e = []
    for index in range(repeat + 1):  # the first generation is the warm-up
        if index == 1:
            recorder.reset()
        started = time.perf_counter()
        pipeline([PROMPT], make_scheduler("ddim"), steps, 3.0, 1, NoiseSource(np.random.default_rng(index)))
        recorder.end_generation()
        if index:
            e2e.append(time.perf_counter() - started)
    stages = {stage: summarize(recorder.per_generation[stage]) for stage in STAGES}
    step = summarize(recorder.calls[UNET + "_step"])
    fixed = sum(stages[s]["median"] for s in STAGES if s != "unet_step")
    return {"stages": stages, "unet_step": step, "end_to_end": summarize(e2e),
            "extrapolated_100_steps_s": fixed + 100 * step["median"]}


def run(size: str, device_name: str, steps: int, repeat: int, exported: bool) -> dict:
    import torch

    from ..runtime.backends.torch_backend import resolve_device, wrap_modules
    from ..runtime.backends.torch_models import ModelBuilder

    device = resolve_device(device_name)
    checkpoint = load_checkpoint(f"random:{size}")
    config = checkpoint.pipeline_config()
    specs = component_specs(config)
    tokenizer = checkpoint.tokenizer()
    started = time.perf_counter()
    modules = ModelBuilder(checkpoint).build()
    build_s = time.perf_counter() - started
    probe = specs[UNET].sample_inputs({"cfg_batch": 2, "text_len": 32, "latent_frames": config.latent_frames}, config)
    results: dict[str, dict] = {}
    reference_unet = None
    for name, (precision, graph) in TORCH_VARIANTS.items():
        if device.type != "cuda" and (precision != "fp32" or graph):
            results[name] = {"skipped": "needs a CUDA GPU"}
            continue
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        components = wrap_modules(modules, specs, str(device), precision, graph)
        unet_out = components[UNET](**probe)
        reference_unet = unet_out if reference_unet is None else reference_unet
        pipeline = TangoPipeline(components, tokenizer, config, checkpoint.scheduler_config)
        results[name] = {**measure(pipeline, steps, repeat), "memory": _cuda_memory(torch, device),
                         "unet_vs_fp32": compare(unet_out, reference_unet)}
        print(f"{name}: UNet step {results[name]['unet_step']['median'] * 1e3:.1f} ms, 100 steps "
              f"~{results[name]['extrapolated_100_steps_s']:.2f} s", flush=True)
        del components, pipeline
        gc.collect()
    results.update(_exported_variants(exported, device, size))
    return {
        "benchmark": "gpu_check",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "config": {"model": f"random:{size}", "device": str(device), "steps": steps, "repeat": repeat,
                   "batch": 1, "scheduler": "ddim", "module_build_s": build_s},
        "variants": results,
    }


def _exported_variants(enabled: bool, device, size: str) -> dict:
    """ONNX Runtime CUDA and TensorRT rows: measured with --exported when installed, else a stated reason."""
    rows: dict[str, dict] = {}
    try:
        import onnxruntime

        cuda_ep = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except ImportError:
        cuda_ep = False
    try:
        import tensorrt  # noqa: F401

        has_trt = True
    except ImportError:
        has_trt = False
    if not cuda_ep:
        rows["onnxruntime cuda fp16"] = {"skipped": "onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu)"}
    if not has_trt:
        rows["tensorrt fp16"] = {"skipped": "tensorrt is not installed"}
    if not enabled or device.type != "cuda":
        for name, ok in (("onnxruntime cuda fp16", cuda_ep), ("tensorrt fp16", has_trt)):
            if ok:
                rows[name] = {"skipped": "export / engine build not requested (--exported)"}
        return rows
    from ..benchmarks.bench import BenchConfig, prepare, run_child

    variants = [v for v, ok in (("onnxruntime:fp16", cuda_ep), ("tensorrt", has_trt)) if ok]
    config = BenchConfig(model=f"random:{size}", variants=variants, batches=[1], steps=20, device="cuda")
    for name, job in prepare(config, Path.home() / ".cache" / "tango-rt" / "gpu_check").items():
        rows[name] = run_child(job)
    return rows


def table(result: dict) -> str:
    lines = [
        f"GPU check: {result['config']['model']} on {result['config']['device']} "
        f"({', '.join(result['machine']['gpus']) or result['machine']['cpu']}), batch 1, "
        f"{result['config']['steps']} DDIM steps, {result['config']['repeat']} timed runs",
        "",
        "| variant | T5 ms | UNet step ms (median / p95) | VAE ms | vocoder ms | 100 steps s (extrapolated) "
        "| peak alloc MB | UNet SNR vs fp32 dB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in result["variants"].items():
        if "skipped" in v or "error" in v:
            lines.append(f"| {name} | {v.get('skipped') or v.get('error')} |")
            continue
        if "stages" not in v:  # a bench child's result (exported variants)
            run = v["batches"]["1"]
            step = run["stages"]["unet_step"]
            lines.append(f"| {name} | - | {step['median'] * 1e3:.1f} / {step['p95'] * 1e3:.1f} | - | - | - | - | - |")
            continue
        ms = {s: v["stages"][s]["median"] * 1e3 for s in STAGES}
        snr = v["unet_vs_fp32"]["snr_db"]
        lines.append(
            f"| {name} | {ms['text_encoder']:.1f} | {v['unet_step']['median'] * 1e3:.1f} / "
            f"{v['unet_step']['p95'] * 1e3:.1f} | {ms['vae_decoder']:.1f} | {ms['vocoder']:.1f} | "
            f"{v['extrapolated_100_steps_s']:.3f} | {v['memory'].get('peak_allocated_mb', float('nan')):.0f} | "
            f"{'ref' if snr == float('inf') else f'{snr:.1f}'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=["full", "tiny"], default="full")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--exported", action="store_true", help="also export + build ORT-CUDA / TensorRT variants")
    parser.add_argument("--out", default=None, help="folder for results.json and results.md")
    args = parser.parse_args(argv)
    result = run(args.size, args.device, args.steps, args.repeat, args.exported)
    text = table(result)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result, indent=2))
        (out / "results.md").write_text(f"# GPU check\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
