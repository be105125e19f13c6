"""The `tango-rt` command: generate, info, export, build, check, bench.

User mistakes (TangoError) print one line and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .runtime.checkpoint import DEFAULT_MODEL
from .runtime.config import DEFAULT_MAX_BATCH
from .runtime.errors import TangoError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[func.__name__.removeprefix("cmd_")] = func
    return func


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "prompt"


@command
def cmd_generate(args: argparse.Namespace) -> int:
    from .runtime.audio import write_wav
    from .runtime.tango import Tango

    tango = Tango(args.model, device=args.device, backend=args.backend, **_backend_options(args))
    waves = tango.generate_for_batch(
        args.prompts,
        steps=args.steps,
        guidance=args.guidance,
        samples=args.samples,
        batch_size=args.batch_size,
        disable_progress=args.quiet,
        scheduler=args.scheduler,
        seed=args.seed,
    )
    per_prompt = waves if args.samples > 1 else [[w] for w in waves]
    for index, (prompt, clips) in enumerate(zip(args.prompts, per_prompt, strict=True)):
        for sample, wave in enumerate(clips):
            suffix = f"_s{sample}" if args.samples > 1 else ""
            path = write_wav(Path(args.out) / f"{index:02d}_{_slug(prompt)}{suffix}.wav", wave, tango.sample_rate)
            print(path)
    return 0


@command
def cmd_info(args: argparse.Namespace) -> int:
    from .runtime.info import describe

    info = describe(args.model)
    print(json.dumps(info, indent=2) if args.json else info["summary"])
    if not args.json:
        print(json.dumps(info["configs"], indent=2))
    return 0


@command
def cmd_export(args: argparse.Namespace) -> int:
    from .export.onnx_export import export_onnx
    from .runtime.specs import ShapeProfile

    out = export_onnx(
        args.model, args.out, precision=args.precision, force=args.force, opset=args.opset,
        profile=ShapeProfile(max_batch=args.max_batch, max_duration=args.max_duration),
    )
    print(out)
    return 0


@command
def cmd_build(args: argparse.Namespace) -> int:
    from .engines.build import build_engines

    static = None
    if args.static:
        static = {"batch": args.batch, "text_len": args.text_len, "latent_frames": args.latent_frames}
    out = build_engines(args.onnx, args.out, static=static, timing_cache=args.timing_cache,
                        optimization_level=args.opt_level, workspace_gb=args.workspace_gb, force=args.force)
    print(out)
    return 0


@command
def cmd_check(args: argparse.Namespace) -> int:
    from .export.check import check_model, format_rows

    rows = check_model(args.model, backend=args.backend, device=args.device, **_backend_options(args))
    print(format_rows(rows))
    failed = [f"{r.component} ({r.shape})" for r in rows if not r.passed]
    if failed:
        print(f"tango-rt: check failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


@command
def cmd_bench(args: argparse.Namespace) -> int:
    from .benchmarks.bench import main as bench_main

    return bench_main(args)


def _backend_options(args: argparse.Namespace) -> dict:
    options = {"precision": args.precision}
    if getattr(args, "providers", None):
        options["providers"] = args.providers.split(",")
    if getattr(args, "threads", None):
        options["threads"] = args.threads
    if getattr(args, "cuda_graph", False):
        options["cuda_graph"] = True
    return {k: v for k, v in options.items() if v is not None}


def _add_runtime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help="Hub id, checkpoint folder, exported folder, random:full|tiny"
    )
    parser.add_argument("--backend", default="torch", help="torch | onnxruntime | tensorrt, or per component: "
                        "'text_encoder=torch,default=onnxruntime'")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: CUDA when available)")
    parser.add_argument("--precision", default=None, choices=["fp32", "fp16"], help="torch precision (default fp32)")
    parser.add_argument("--providers", default=None, help="onnxruntime execution providers, comma-separated")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument("--cuda-graph", action="store_true", help="replay the UNet from CUDA graphs (torch on "
                        "CUDA; tensorrt with --static engines)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tango-rt", description="Fast inference for Tango text-to-audio models")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write one 16 kHz WAV per prompt and sample")
    gen.add_argument("prompts", nargs="+", help="text prompts")
    _add_runtime_args(gen)
    gen.add_argument("--steps", type=int, default=100)
    gen.add_argument("--guidance", type=float, default=3.0)
    gen.add_argument("--samples", type=int, default=1, help="samples per prompt")
    gen.add_argument("--batch-size", type=int, default=8)
    gen.add_argument("--scheduler", default="ddpm", help="ddpm (the original's default) or ddim")
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("-o", "--out", default="tango_out", help="output folder")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    exp = sub.add_parser("export", help="export the four networks to an ONNX model folder")
    exp.add_argument("--model", default=DEFAULT_MODEL, help="Hub id, checkpoint folder, or random:full|tiny")
    exp.add_argument("--out", required=True, help="output folder")
    exp.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"],
                     help="fp16 (GPUs) keeps T5, attention scores and the timestep embedding in fp32; int8 (CPUs) "
                     "quantizes the UNet's MatMul weights dynamically, a separate option with its own accuracy")
    exp.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                     help="clips per denoising call (prompts x samples) the graphs are declared for")
    exp.add_argument("--max-duration", type=float, default=None,
                     help="longest clip in seconds the graphs are declared for (default 4x the model's 10.24 s)")
    exp.add_argument("--opset", type=int, default=17)
    exp.add_argument("--force", action="store_true", help="overwrite a non-empty output folder")

    build = sub.add_parser("build", help="build TensorRT engines from an exported ONNX folder (needs a GPU)")
    build.add_argument("--onnx", required=True, help="folder written by `tango-rt export` (fp16 recommended)")
    build.add_argument("--out", required=True, help="engine folder to write")
    build.add_argument("--static", action="store_true", help="one fixed shape per engine (enables CUDA graphs)")
    build.add_argument("--batch", type=int, default=1, help="--static: clips per call")
    build.add_argument("--text-len", type=int, default=64, help="--static: text tokens (prompts are padded to it)")
    build.add_argument("--latent-frames", type=int, default=None, help="--static: latent frames (default 256)")
    build.add_argument("--timing-cache", default=None, help="timing cache file (default OUT/timing.cache)")
    build.add_argument("--opt-level", type=int, default=3, help="TensorRT builder optimization level 0-5")
    build.add_argument("--workspace-gb", type=float, default=None, help="cap the builder's workspace")
    build.add_argument("--force", action="store_true", help="overwrite a non-empty output folder")

    check = sub.add_parser("check", help="compare each component with the FP32 torch reference (error, SNR)")
    _add_runtime_args(check)
    check.set_defaults(backend=None)

    bench = sub.add_parser("bench", help="per-stage latency, RTF and memory of several backends in one run")
    bench.add_argument("--model", default=None, help="checkpoint, exported folder (default declare-lab/tango2)")
    bench.add_argument("--random-weights", choices=["full", "tiny"], default=None,
                       help="the Tango architecture with random weights (timing needs no trained weights)")
    bench.add_argument("--backends", default="torch,onnxruntime",
                       help="variants, comma-separated: torch, torch:fp16, onnxruntime, onnxruntime:fp16, "
                       "onnxruntime:int8, tensorrt")
    bench.add_argument("--batch", default="1", help="batch sizes, comma-separated (throughput vs batch)")
    bench.add_argument("--steps", type=int, default=10)
    bench.add_argument("--scheduler", default="ddim")
    bench.add_argument("--warmup", type=int, default=1)
    bench.add_argument("--repeat", type=int, default=3)
    bench.add_argument("--device", default=None)
    bench.add_argument("--work", default=str(Path.home() / ".cache" / "tango-rt" / "bench"),
                       help="where exports for the ONNX / TensorRT variants are cached")
    bench.add_argument("--out", default="bench_results", help="writes results.json, results.md, chart.png")

    info = sub.add_parser("info", help="components, parameter counts and configs of a model")
    info.add_argument("--model", default=DEFAULT_MODEL)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TangoError as exc:
        print(f"tango-rt: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head & co.
        return 0


if __name__ == "__main__":
    sys.exit(main())
