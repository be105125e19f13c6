"""The first GPU session's one check: the torch CUDA paths on the full-size model, in one table.

    bash studies/first_gpu/run.sh                    # on the GPU machine (after studies/first_gpu/prepare.sh here)
    python studies/first_gpu/first_gpu.py --device cpu --model random:tiny --variants fp32   # the CPU dry run

For each variant (torch FP32, FP16, FP16 + CUDA graph, the turbo preset's UNet plan on FP16 + graph and on FP32,
FP16 + torch.compile, last) on `random:full`: load time, one UNet step and whole generations (median of --repeat after
a warm-up generation of the same prompt; the turbo rows' step median mixes full and shallow calls), peak GPU memory,
and each path's error against FP32 on one fixed UNet input (cosine, SNR; export/check.compare). Each variant runs in
a process of its own under its own time cap: a failure, a hang or a CUDA crash is a row with its error, and the
table ($OUT or --out) is written again after every variant, so a run cut off returns what ran. Random weights time
the networks; they say nothing about audio quality.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tango_rt.benchmarks.stats import summarize
from tango_rt.export.check import compare
from tango_rt.runtime.instrument import Recorder, instrument
from tango_rt.runtime.precision import FP16
from tango_rt.runtime.presets import TURBO
from tango_rt.runtime.specs import TYPICAL_TEXT_LEN, UNET, dims

TURBO_PLAN = {key: TURBO[key] for key in ("guidance_interval", "cache_interval")}  # the turbo preset's UNet plan
VARIANTS = {  # constructor options; "plan": the UNet plan generation runs with (the shallow network on the GPU)
    "fp32": {},
    "fp16": {"precision": FP16},
    "fp16+graph": {"precision": FP16, "cuda_graph": True},
    "fp16+graph+turbo": {"precision": FP16, "cuda_graph": True, "plan": TURBO_PLAN},
    "fp32+turbo": {"plan": TURBO_PLAN},
    "fp16+compile": {"precision": FP16, "compile": True},  # last: compiling the full-size UNet takes minutes
}
SETTINGS = {"steps": 20, "scheduler": "unipc", "scheduler_options": {"use_karras_sigmas": True}}
PROMPT = "An audience cheering and clapping"  # warm-up and timed runs alike: one text length, no recompiling
# Each variant's time cap on an H100 (seconds; random full-size weights load in each process): what one 15-minute
# lease can hold next to the GPU tests (studies/first_gpu/run.sh: about 540 s in all). compile goes last.
CAPS_S = {"fp32": 80, "fp16": 50, "fp16+graph": 50, "fp16+graph+turbo": 50, "fp32+turbo": 50, "fp16+compile": 120}
MIN_CAP_S = 15


def nvidia_smi() -> str:
    try:
        return subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi unavailable: {exc}"


def unet_probe(tango: Any) -> dict[str, np.ndarray]:
    """One fixed guided UNet input at the default clip length (batch 1, a typical prompt's tokens), the same for
    every variant."""
    config = tango.pipeline.config
    shape = dims(config, 1, TYPICAL_TEXT_LEN)
    rng = np.random.default_rng(0)
    rows, tokens = shape["cfg_batch"], shape["text_len"]
    return {"sample": rng.standard_normal(config.latent_shape(rows), dtype=np.float32),
            "timestep": np.full(rows, 500.0, np.float32),
            "encoder_hidden_states": rng.standard_normal((rows, tokens, config.text_hidden_size), dtype=np.float32),
            "encoder_attention_mask": np.ones((rows, tokens), bool)}


def run_variant(model: str, device: str, options: dict, repeat: int, reference: np.ndarray | None,
                settings: dict | None = None):
    """One variant in this process: load, a warm-up generation at the timed prompt's length (so CUDA graphs and
    compiled kernels are not made again), `repeat` timed generations, the UNet on the probe."""
    from tango_rt.runtime.tango import Tango

    options = dict(options)
    settings = {**(settings or SETTINGS), **options.pop("plan", {})}
    torch = _torch()
    if torch is not None and device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    tango = Tango(model, device=device, **options)
    row: dict[str, Any] = {"load_s": time.perf_counter() - started}
    recorder = Recorder()
    instrument(tango.pipeline, recorder)
    tango.generate(PROMPT, seed=repeat, **settings)  # compiles, captures, autotunes at the timed shapes
    recorder.reset()
    totals = []
    for index in range(repeat):
        started = time.perf_counter()
        audio = tango.generate(PROMPT, seed=index, **settings)
        totals.append(time.perf_counter() - started)
        recorder.end_generation()
        row["finite"] = bool(np.isfinite(audio.astype(np.float32)).all())
    row["generation_s"] = summarize(totals)["median"]
    row["unet_step_s"] = summarize(recorder.calls["unet_step"])["median"]
    output = tango.pipeline.components[UNET](**unet_probe(tango))[0]  # noise_pred (the deep feature is [1])
    if reference is not None:
        metrics = compare(output, reference)
        row.update(unet_cosine=metrics["cosine"], unet_snr_db=metrics["snr_db"])
    if torch is not None and device.startswith("cuda"):
        row["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row, output


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def table(rows: dict[str, dict]) -> str:
    lines = ["| variant | load s | UNet step ms | generation s | speed-up vs fp32 | peak GPU GiB | "
             "UNet cosine / SNR dB vs fp32 |", "|---|---|---|---|---|---|---|"]
    base = rows.get("fp32", {}).get("generation_s")
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'][:150]} | | | | | |")
            continue
        ratio = f"{base / r['generation_s']:.2f}x" if base and r.get("generation_s") else "-"
        parity = f"{r['unet_cosine']:.6f} / {r['unet_snr_db']:.1f}" if "unet_cosine" in r else "reference"
        peak = f"{r['peak_gpu_gib']:.2f}" if "peak_gpu_gib" in r else "-"
        lines.append(f"| {name} | {r['load_s']:.1f} | {1000 * r['unet_step_s']:.1f} | {r['generation_s']:.2f} | "
                     f"{ratio} | {peak} | {parity} |")
    return "\n".join(lines)


def one(args: argparse.Namespace) -> int:
    """The child: one variant, its row (or its error) written to OUT/rows/<name>.json, FP32's probe output kept as
    the others' reference."""
    out = Path(args.out)
    rows = out / "rows"
    rows.mkdir(parents=True, exist_ok=True)
    reference_file = out / "probe_fp32.npy"
    reference = np.load(reference_file) if args.one != "fp32" and reference_file.exists() else None
    try:
        settings = {**SETTINGS, "steps": args.steps, **({"duration": args.duration} if args.duration else {})}
        row, output = run_variant(args.model, args.device, VARIANTS[args.one], args.repeat, reference, settings)
        if args.one == "fp32":
            np.save(reference_file, output)
    except Exception as exc:  # the parent reads the row: a failure is a row with its error
        row = {"error": f"{type(exc).__name__}: {exc}"}
    (rows / f"{args.one}.json").write_text(json.dumps(row, default=str))
    return 0 if "error" not in row else 1


def run_all(args: argparse.Namespace, environment: dict) -> dict[str, dict]:
    """Each variant in a process of its own under its own time cap (a CUDA failure or a hang ends that variant
    only), the record rewritten after every one (a run cut off still leaves what ran), within the total budget."""
    out = Path(args.out)
    started, rows = time.monotonic(), {}
    for name in args.variants.split(","):
        left = args.budget_s - (time.monotonic() - started)
        cap = min(CAPS_S.get(name, 60.0) * args.cap_scale, left)
        if cap < MIN_CAP_S:
            rows[name] = {"error": f"skipped: {left:.0f} s left of the {args.budget_s:g} s budget"}
        else:
            command = [sys.executable, __file__, "--one", name, "--model", args.model, "--device", args.device,
                       "--repeat", str(args.repeat), "--steps", str(args.steps), "--out", str(out),
                       *(["--duration", str(args.duration)] if args.duration else [])]
            try:
                subprocess.run(command, timeout=cap, check=False)
                result = out / "rows" / f"{name}.json"
                rows[name] = json.loads(result.read_text()) if result.exists() else {"error": "the process died"}
            except subprocess.TimeoutExpired:
                rows[name] = {"error": f"timed out after {cap:.0f} s"}
        print(f"{name}: {rows[name]}", flush=True)
        write(out, environment, args, rows)
    return rows


def write(out: Path, environment: dict, args: argparse.Namespace, rows: dict) -> str:
    text = table(rows)
    (out / "first_gpu.json").write_text(json.dumps({"environment": environment, "settings": SETTINGS,
                                                    "model": args.model, "device": args.device, "rows": rows},
                                                   indent=2, default=str))
    (out / "first_gpu.md").write_text(f"# First GPU check\n\n```\n{environment['nvidia_smi']}```\n\n{text}\n")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:full")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"from {list(VARIANTS)}, in this order")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=SETTINGS["steps"], help="sampler steps per generation")
    parser.add_argument("--duration", type=float, default=None, help="clip length in seconds (default 10.24)")
    parser.add_argument("--budget-s", type=float, default=400.0, help="all variants together")
    parser.add_argument("--cap-scale", type=float, default=1.0, help="times each variant's own time cap")
    parser.add_argument("--out", default=os.environ.get("OUT", "first_gpu_results"))
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # the child running one variant
    args = parser.parse_args(argv)
    if args.one is not None:
        return one(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch = _torch()
    environment = {"nvidia_smi": nvidia_smi(), "python": platform.python_version(),
                   "torch": getattr(torch, "__version__", None),
                   "cuda": getattr(getattr(torch, "version", None), "cuda", None)}
    print(environment["nvidia_smi"])
    rows = run_all(args, environment)
    print(write(out, environment, args, rows))
    return 0 if all("error" not in r for r in rows.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
