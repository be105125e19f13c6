"""One full-size UNet step on CPU: ONNX Runtime against torch eager, interleaved in one process.

    python studies/unet_step_cpu/unet_step_cpu.py --out studies/unet_step_cpu/results

Batch 2 (one classifier-free-guidance step), latents 8 x 256 x 16, text length 32, random weights of the real
architecture (865.9M parameters). Variants run round-robin so machine noise hits all of them alike; the
baseline is torch eager FP32 of the same run. Also records each variant's error against the torch output, the
step's FLOP count (torch's FlopCounterMode) and achieved GFLOP/s, and an op-level profile of torch and of
ONNX Runtime: the evidence for where the time goes. ONNX Runtime runs the export's graph with fused attention
(its CPU default) and, for comparison, the plain graph whose attention materialises the score matrix. INT8 is a
separate, clearly labelled option: it changes the numbers the model computes.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from pathlib import Path

from tango_rt.benchmarks.machine import machine_info
from tango_rt.benchmarks.report import save_results
from tango_rt.benchmarks.stats import speedup, summarize
from tango_rt.export.check import compare
from tango_rt.export.onnx_export import reuse_or_export
from tango_rt.runtime import precision
from tango_rt.runtime.artifacts import open_artifact
from tango_rt.runtime.checkpoint import load_checkpoint
from tango_rt.runtime.specs import UNET, component_specs, dims

MODEL = "random:full"
BATCH, TEXT_LEN = 1, 32  # one guided step (the UNet sees 2 rows), 32 tokens, the default clip length
FP32 = "onnxruntime fp32"  # the backend's default on CPU: the export's graph with fused attention


def ort_profile(path: Path, feeds: dict, threads: int) -> dict[str, float]:
    """Seconds per op type for one step, from ONNX Runtime's own profiler."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(os.environ.get("TMPDIR", "/tmp")) / "tango_rt_unet_profile")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, feeds)  # the warm-up run is profiled too: keep only the last run's kernels
    session.run(None, feeds)
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    last = max((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    per_op: collections.Counter = collections.Counter()
    for event in events:
        inside = last["ts"] <= event["ts"] <= last["ts"] + last["dur"]
        if inside and event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / 1e6
    return dict(per_op.most_common())


def torch_profile(module, args) -> dict[str, float]:
    """Seconds per aten op for one step, from torch.profiler (self CPU time)."""
    import torch

    with torch.inference_mode(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        module(*args)
    rows = [(e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()]
    return dict(sorted(rows, key=lambda r: -r[1]))


def gemm_throughput(threads: int, size: int = 4096, repeat: int = 3) -> float:
    """This machine's practical FP32 ceiling: GFLOP/s of one large torch matmul (oneDNN / MKL sgemm)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def count_flops(module, args) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(*args)
    return counter.get_total_flops()


def run(work: Path, out: Path, repeat: int, warmup: int, threads: int) -> dict:
    import torch

    from tango_rt.runtime.backends import ort_backend, torch_backend

    torch.set_num_threads(threads)
    machine = machine_info()
    checkpoint = load_checkpoint(MODEL)
    config = checkpoint.pipeline_config()
    shape = dims(config, BATCH, TEXT_LEN)
    feeds = component_specs(config)[UNET].sample_inputs(shape, config)
    folders = {FP32: reuse_or_export(MODEL, work / "fp32", precision.FP32, [UNET]),
               "onnxruntime int8 (separate option)": reuse_or_export(MODEL, work / "int8", precision.INT8, [UNET])}
    variants = {"torch eager fp32": torch_backend.load_components(checkpoint, [UNET], device="cpu")[UNET]}
    for label, folder in folders.items():
        variants[label] = ort_backend.load_components(open_artifact(folder), [UNET], threads=threads)[UNET]
    plain = ort_backend.load_components(open_artifact(folders[FP32]), [UNET], threads=threads, fused_attention=False)
    variants[f"{FP32}, plain graph (unfused attention)"] = plain[UNET]
    outputs = {label: unet(**feeds) for label, unet in variants.items()}
    samples = _time_rounds(variants, feeds, repeat, warmup)
    baseline = "torch eager fp32"
    torch_module = variants[baseline].module
    args = [torch.from_numpy(feeds[name]) for name in feeds]
    flops = count_flops(torch_module, args)
    ceiling = gemm_throughput(threads)
    stats = {label: summarize(values) for label, values in samples.items()}
    return {
        "benchmark": "unet_step_cpu",
        "command": f"python studies/unet_step_cpu/unet_step_cpu.py --repeat {repeat} --warmup {warmup} "
                   f"--threads {threads}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "config": {"model": MODEL, **shape, "threads": threads, "repeat": repeat, "warmup": warmup},
        "flops_per_step": flops,
        "fp32_gemm_gflops_per_s": ceiling,
        "baseline": baseline,
        "variants": {
            label: {
                "step_s": stats[label],
                "speedup_vs_baseline": speedup(stats[baseline], stats[label]),
                "gflops_per_s": flops / stats[label]["median"] / 1e9,
                "share_of_fp32_gemm_ceiling": flops / stats[label]["median"] / 1e9 / ceiling,
                "error_vs_baseline": compare(outputs[label], outputs[baseline]),
            }
            for label in variants
        },
        "profile_s_per_step": {
            baseline: dict(list(torch_profile(torch_module, args).items())[:15]),
            FP32: dict(list(ort_profile(folders[FP32] / "unet.ort.onnx", feeds, threads).items())[:15]),
            f"{FP32}, plain graph": dict(list(ort_profile(folders[FP32] / "unet.onnx", feeds, threads).items())[:15]),
        },
    }


def _time_rounds(variants: dict, feeds: dict, repeat: int, warmup: int) -> dict[str, list[float]]:
    """Each variant's step time per round, the variants interleaved within a round (the machine's noise then
    hits them alike); the first call of each (the outputs kept) counts as one warm-up."""
    for _ in range(warmup - 1):
        for unet in variants.values():
            unet(**feeds)
    samples: dict[str, list[float]] = {label: [] for label in variants}
    for round_ in range(repeat):
        for label, unet in variants.items():
            started = time.perf_counter()
            unet(**feeds)
            samples[label].append(time.perf_counter() - started)
        print(f"round {round_ + 1}/{repeat}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in samples.items()),
              flush=True)
    return samples


def markdown(result: dict) -> str:
    lines = [
        "# One full-size UNet step on CPU",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores; "
        f"{result['config']['threads']} threads. Command: `{result['command']}`. Created {result['created']}.",
        f"Step: batch {result['config']['cfg_batch']}, latents 8x{result['config']['latent_frames']}x16, "
        f"text length {result['config']['text_len']}, "
        f"{result['flops_per_step'] / 1e12:.2f} TFLOP (torch FlopCounterMode). FP32 ceiling of this machine: "
        f"{result['fp32_gemm_gflops_per_s']:.0f} GFLOP/s (one 4096^3 torch sgemm, best of 3).",
        "",
        "| variant | median s | p95 s | speed-up vs torch | GFLOP/s | share of FP32 ceiling | max rel err | cosine |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, v in result["variants"].items():
        e = v["error_vs_baseline"]
        lines.append(f"| {label} | {v['step_s']['median']:.2f} | {v['step_s']['p95']:.2f} | "
                     f"{v['speedup_vs_baseline']:.2f}x | {v['gflops_per_s']:.0f} | "
                     f"{100 * v['share_of_fp32_gemm_ceiling']:.0f}% | {e['max_rel']:.1e} | {e['cosine']:.6f} |")
    for label, profile in result["profile_s_per_step"].items():
        total = sum(profile.values())
        lines += ["", f"Top ops, {label} (s per step, share of the listed ops):", ""]
        lines += [f"- {op}: {sec:.2f} s ({100 * sec / total:.0f}%)" for op, sec in list(profile.items())[:8]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "tango-rt" / "bench-unet"),
                        help="where the random-weight UNet exports are kept between runs")
    parser.add_argument("--out", default="studies/unet_step_cpu/results")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    result = run(Path(args.work), Path(args.out), args.repeat, max(1, args.warmup), args.threads)
    save_results(Path(args.out), result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
