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

from . import __version__
from .engines.profiles import ENGINE_MAX_BATCH, MAX_ACTIVATION_GB
from .export.calibration import CALIBRATION_CALLS, CALIBRATION_SEED
from .runtime.backends.registry import BACKENDS
from .runtime.checkpoint import DEFAULT_MODEL
from .runtime.config import DEFAULT_MAX_BATCH
from .runtime.errors import InputError, TangoError, TangoWarning
from .runtime.guidance import CACHE_SCHEDULES
from .runtime.precision import EXPORT_PRECISIONS, FP32, RUNTIME_PRECISIONS, W8A8
from .runtime.presets import PRESETS
from .runtime.schedulers import SCHEDULER_NAMES
from .runtime.schedulers.config import option_pairs
from .runtime.specs import COMPONENTS, STATIC_TEXT_LEN
from .serving.settings import Settings

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[func.__name__.removeprefix("cmd_")] = func
    return func


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "prompt"


def _output_paths(out: str, prompts: list[str], samples: int) -> list[Path]:
    """One path per clip: `out` itself when it names one audio file, else numbered WAVs in the folder `out`."""
    from .runtime.audio import AUDIO_FORMATS

    target = Path(out)
    count = len(prompts) * samples
    if target.suffix.lower().lstrip(".") in AUDIO_FORMATS:
        if count != 1:
            raise InputError(f"-o {out} names one file but {count} clips are asked for; give a folder instead")
        return [target]
    return [target / f"{index:02d}_{_slug(prompt)}{f'_s{sample}' if samples > 1 else ''}.wav"
            for index, prompt in enumerate(prompts) for sample in range(samples)]




def _pair(meaning: str, example: str) -> Callable[[str], tuple[float, float]]:
    """An argparse type for an A:B pair of numbers, whose error says what the pair means."""

    def parse(text: str) -> tuple[float, float]:
        first, sep, second = text.partition(":")
        try:
            if sep:
                return float(first), float(second)
        except ValueError:
            pass
        raise argparse.ArgumentTypeError(f"expected {meaning}, e.g. {example}, got {text!r}")

    return parse


FLAG_TYPES: dict[str, dict] = {  # how each option kind (runtime/options.py) reads from the command line
    "int": {"type": int},
    "number": {"type": float},
    "bool": {"action": "store_true"},
    "choice": {},
    "pair": {"type": _pair("LOW:HIGH", "0.5:3")},
    "spans": {"type": _pair("START:END in seconds", "3.2:4.0"), "action": "append"},
    "mapping": {"action": "append"},
}


def add_request_flags(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One flag per request option (runtime/request.py: name, kind, meaning, default), none given by default, so
    that a --preset fills what the command line leaves out."""
    from .runtime.request import OPTIONS

    for name, option in OPTIONS.items():
        if name in skip:
            continue
        flag = option.flag or "--" + name.replace("_", "-")
        extra = {"choices": list(option.choices)} if option.kind == "choice" else {}
        if option.metavar:
            extra["metavar"] = option.metavar
        default = f" (default {option.default})" if option.default not in (None, False) else ""
        parser.add_argument(flag, dest=name, default=None, help=option.help + default,
                            **{**FLAG_TYPES[option.kind], **extra})


def request_values(args: argparse.Namespace) -> dict:
    """The request options given on the command line, in the request's terms."""
    from .runtime.request import OPTIONS

    values = {name: getattr(args, name) for name in OPTIONS if getattr(args, name, None) is not None}
    if "scheduler_options" in values:
        values["scheduler_options"] = option_pairs(values["scheduler_options"])
    return values


@command
def cmd_generate(args: argparse.Namespace) -> int:
    from .generate import check_sources, from_prompt_file, replay, write_clips
    from .runtime.request import GenerationRequest, check_value

    check_sources(args.prompts, args.prompt_file, args.replay)
    batch_size = check_value("--batch-size", args.batch_size, low=1)
    if args.replay:
        print(replay(lambda model: _tango(args, model), args.replay, _output_paths(args.out, ["replay"], 1)[0],
                     args.model, args.audio))
        return 0
    if args.prompt_file:
        return from_prompt_file(lambda _: _tango(args, args.model), args.prompt_file, Path(args.out),
                                request_values(args), batch_size=batch_size, overwrite=args.overwrite,
                                quiet=args.quiet)
    request = GenerationRequest.build(args.prompts, **request_values(args), audio=args.audio).seeded()
    paths = _output_paths(args.out, args.prompts, request.samples)
    for path in write_clips(_tango(args, args.model), request, paths, quiet=args.quiet, batch_size=batch_size):
        print(path)
    return 0


def _tango(args: argparse.Namespace, model: str | None):
    from .runtime.tango import Tango

    return Tango(model or DEFAULT_MODEL, device=args.device, backend=args.backend, **_backend_options(args))


@command
def cmd_info(args: argparse.Namespace) -> int:
    from .runtime.info import describe

    if args.clip:
        from .generate import clip_info

        print(clip_info(args.clip))
        return 0
    info = describe(args.model)
    print(json.dumps(info, indent=2) if args.json else info["summary"])
    if not args.json:
        print(json.dumps(info["configs"], indent=2))
    return 0


@command
def cmd_export(args: argparse.Namespace) -> int:
    from .export.calibration import Calibration
    from .export.onnx_export import export_onnx
    from .runtime.specs import ShapeProfile

    if args.w8a8_decoders and args.precision != W8A8:
        raise InputError(f"--w8a8-decoders quantizes the decoders of a w8a8 export; --precision is {args.precision}")
    out = export_onnx(
        args.model, args.out, precision=args.precision, force=args.force, opset=args.opset,
        profile=ShapeProfile(max_batch=args.max_batch, max_duration=args.max_duration),
        calibration=Calibration(args.calibration_prompts, args.calibration_seed, args.calibration_calls,
                                decoders=args.w8a8_decoders),
    )
    print(out)
    return 0


@command
def cmd_build(args: argparse.Namespace) -> int:
    from .engines.build import build_engines

    static = None
    shape = {"batch": args.batch, "text_len": args.text_len, "latent_frames": args.latent_frames}
    if not args.static and any(v is not None for v in shape.values()):
        given = [f"--{k.replace('_', '-')}" for k, v in shape.items() if v is not None]
        raise InputError(f"{', '.join(given)} fix an engine's shape and need --static")
    if args.static:
        static = {"batch": args.batch or 1, "text_len": args.text_len or STATIC_TEXT_LEN,
                  "latent_frames": args.latent_frames}
    out = build_engines(args.onnx, args.out, static=static, timing_cache=args.timing_cache,
                        optimization_level=args.opt_level, workspace_gb=args.workspace_gb, force=args.force,
                        max_batch=args.max_batch, max_duration=args.max_duration,
                        max_activation_gb=args.max_activation_gb)
    print(out)
    return 0


@command
def cmd_check(args: argparse.Namespace) -> int:
    from .export.check import check_model, format_rows

    components = args.components.split(",") if args.components else None
    rows = check_model(args.model, backend=args.backend, device=args.device, components=components,
                       **_backend_options(args))
    print(format_rows(rows))
    failed = [f"{r.component} ({r.shape})" for r in rows if not r.passed]
    if failed:
        print(f"tango-rt: check failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


@command
def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
    except ImportError as exc:
        raise InputError(f"serving needs its extra ({exc}): pip install 'tango-rt[serve]'") from None
    api_key = None
    if args.api_key_file:
        try:
            api_key = Path(args.api_key_file).read_text().strip()
        except OSError as exc:
            raise InputError(f"--api-key-file {args.api_key_file}: {exc.strerror}") from None
        if not api_key:
            raise InputError(f"--api-key-file {args.api_key_file} is empty")
    settings = Settings(model=args.model, backend=args.backend, device=args.device, options=_backend_options(args),
                        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                        timeout_s=args.timeout, max_prompt_chars=args.max_prompt_chars, max_steps=args.max_steps,
                        max_duration_s=args.max_duration, max_samples=args.max_samples,
                        max_body_bytes=args.max_body_bytes, max_audio_bytes=args.max_audio_bytes,
                        max_audio_s=args.max_audio_seconds, api_key=api_key, header_timeout_s=args.header_timeout,
                        body_timeout_s=args.body_timeout, max_connections=args.max_connections, preset=args.preset,
                        ui=not args.no_ui)
    if args.ray:
        from .serving.ray_app import run as run_ray

        run_ray(settings, host=args.host, port=args.port, replicas=args.replicas, num_gpus=args.num_gpus)
        return 0
    from .serving.server import serve

    return serve(settings, host=args.host, port=args.port, log_level=args.log_level)


@command
def cmd_loadtest(args: argparse.Namespace) -> int:
    from .benchmarks.loadtest import main as loadtest_main

    return loadtest_main(args)


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


def _add_unet_work_args(parser: argparse.ArgumentParser) -> None:
    """Less UNet work per clip (runtime/guidance.py, runtime/feature_cache.py): generate and bench."""
    parser.add_argument("--guidance-interval", type=FLAG_TYPES["pair"]["type"], default=None, metavar="LOW:HIGH",
                        help="guide only steps whose noise level sigma is in (LOW, HIGH] (Tango's schedule runs "
                        "from 14.6 down to 0.029); the others run the conditional rows alone. Default: every step")
    parser.add_argument("--cache-interval", type=int, default=None, metavar="N",
                        help="the full UNet every N-th step, its shallow branch on the cached deep feature between "
                        "(default 1: every step full)")
    parser.add_argument("--cache-schedule", default=None, choices=list(CACHE_SCHEDULES),
                        help="uniform: every N-th step; center: as many full calls, denser mid-schedule")


def _add_runtime_args(parser: argparse.ArgumentParser, model_default: str | None = DEFAULT_MODEL) -> None:
    parser.add_argument("--model", default=model_default, help="Hub id, checkpoint folder, exported folder, "
                        f"random:full|tiny (default {DEFAULT_MODEL}; with --replay, the file's)")
    parser.add_argument("--backend", default="torch", help=f"{' | '.join(BACKENDS)}, or per component: "
                        "'text_encoder=torch,default=onnxruntime'")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: CUDA when available)")
    parser.add_argument("--precision", default=None, choices=list(RUNTIME_PRECISIONS),
                        help="torch: fp16 (CUDA); openvino: bf16 (CPUs with BF16 units); default fp32")
    parser.add_argument("--providers", default=None, help="onnxruntime execution providers, comma-separated")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime / openvino threads")
    parser.add_argument("--cuda-graph", action="store_true", help="replay the UNet from CUDA graphs (torch on "
                        "CUDA; tensorrt with --static engines)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tango-rt", description="Fast inference for Tango text-to-audio models")
    parser.add_argument("--version", action="version", version=f"tango-rt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write one 16 kHz WAV per prompt and sample, with its settings inside")
    gen.add_argument("prompts", nargs="*", help="text prompts")
    gen.add_argument("--prompts", dest="prompt_file", default=None, metavar="FILE",
                     help="a prompt file (.txt: a prompt a line; .csv / .jsonl: a `prompt` column, optional `name`, "
                     "`seed` and any option): a folder of clips and manifest.jsonl, resumed when run again")
    gen.add_argument("--overwrite", action="store_true", help="with --prompts: make every row again")
    gen.add_argument("--replay", default=None, metavar="FILE",
                     help="make the clip of a file tango-rt wrote again, from the settings it carries")
    _add_runtime_args(gen, model_default=None)
    add_request_flags(gen)
    gen.add_argument("--batch-size", type=int, default=8, help="prompts per denoising call")
    gen.add_argument("--audio", default=None, help="input audio file (any format soundfile reads; resampled to "
                     "16 kHz): a variation with --strength, spans regenerated with --inpaint, or --extend")
    gen.add_argument("-o", "--out", default="tango_out",
                     help="output folder, or one file (.wav, .flac) when a single clip is generated")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    exp = sub.add_parser("export", help="export the four networks to an ONNX model folder")
    exp.add_argument("--model", default=DEFAULT_MODEL, help="Hub id, checkpoint folder, or random:full|tiny")
    exp.add_argument("--out", required=True, help="output folder")
    exp.add_argument("--precision", default=FP32, choices=list(EXPORT_PRECISIONS),
                     help="fp16 (GPUs) keeps T5, attention scores and the timestep embedding in fp32; int8 (ONNX "
                     "Runtime on CPUs) quantizes the UNet's MatMul weights dynamically; int8-weights (OpenVINO) "
                     "stores the UNet's and T5's weights as INT8 (about 4x smaller); w8a8 (CPUs, TensorRT INT8) "
                     "quantizes the UNet's weights and activations, calibrated on sampling trajectories; each is a "
                     "separate option with its own accuracy (tango-rt check)")
    exp.add_argument("--calibration-prompts", default=None, metavar="FILE",
                     help="w8a8: prompts to calibrate on (text, CSV or JSON Lines; default: the shipped set)")
    exp.add_argument("--calibration-seed", type=int, default=CALIBRATION_SEED,
                     help="w8a8: seed of the calibration trajectories (prompt i gets seed + i)")
    exp.add_argument("--calibration-calls", type=int, default=CALIBRATION_CALLS,
                     help="w8a8: UNet calls the INT8 ranges are measured on, spread over the trajectories")
    exp.add_argument("--w8a8-decoders", action="store_true",
                     help="w8a8: quantize the VAE decoder and vocoder too (faster on OpenVINO, measured with VNNI; "
                          "slower on ONNX Runtime's CPU provider; check their rows with tango-rt check)")
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
    build.add_argument("--batch", type=int, default=None, help="--static: clips per call (default 1)")
    build.add_argument("--text-len", type=int, default=None,
                       help=f"--static: text tokens, prompts are padded to it (default {STATIC_TEXT_LEN})")
    build.add_argument("--latent-frames", type=int, default=None, help="--static: latent frames (default 256)")
    build.add_argument("--max-batch", type=int, default=None,
                       help=f"dynamic engines: clips per call up to this (default {ENGINE_MAX_BATCH})")
    build.add_argument("--max-duration", type=float, default=None,
                       help="dynamic engines: seconds per clip up to this (default: the model's, 10.24 s)")
    build.add_argument("--max-activation-gb", type=float, default=MAX_ACTIVATION_GB,
                       help="refuse a profile whose largest activation (attention scores) passes this")
    build.add_argument("--timing-cache", default=None, help="timing cache file (default OUT/timing.cache)")
    build.add_argument("--opt-level", type=int, default=3, help="TensorRT builder optimization level 0-5")
    build.add_argument("--workspace-gb", type=float, default=None, help="cap the builder's workspace")
    build.add_argument("--force", action="store_true", help="overwrite a non-empty output folder")

    check = sub.add_parser("check", help="compare each component with the FP32 torch reference (error, SNR)")
    _add_runtime_args(check)
    check.add_argument("--components", default=None, metavar="NAMES",
                       help=f"comma-separated networks to check (default all): {', '.join(COMPONENTS)}")
    check.set_defaults(backend=None)

    bench = sub.add_parser("bench", help="per-stage latency, RTF, memory and accuracy of several backends, one run")
    bench.add_argument("--suite", default=None, choices=["gpu", "cpu"],
                       help="gpu: every GPU path (torch fp32/fp16/+CUDA graph, onnxruntime fp16, tensorrt) on "
                       "random:full; cpu: the CPU backends; explicit options override the suite's")
    bench.add_argument("--preset", default=None, choices=list(PRESETS),
                       help="the sampling preset every generation uses (steps, sampler, plan); flags override it")
    bench.add_argument("--model", default=None, help="checkpoint, exported folder (default declare-lab/tango2)")
    bench.add_argument("--random-weights", choices=["full", "tiny"], default=None,
                       help="the Tango architecture with random weights (timing needs no trained weights)")
    bench.add_argument("--backends", default=None,
                       help="variants, comma-separated, backend[:precision][+graph]: torch, torch:fp16, "
                       "torch:fp16+graph, onnxruntime, onnxruntime:fp16, onnxruntime:int8, tensorrt (fp16), "
                       "tensorrt:fp32; the first is the baseline (default torch,onnxruntime)")
    bench.add_argument("--batch", default=None, help="batch sizes, comma-separated (default 1)")
    bench.add_argument("--steps", type=int, default=None, help="sampler steps per generation (default 10)")
    bench.add_argument("--scheduler", default=None, choices=SCHEDULER_NAMES, help="sampler (default ddim)")
    bench.add_argument("--scheduler-option", action="append", default=[], metavar="KEY=VALUE",
                       help="sampler option, e.g. use_karras_sigmas=true for the fast preset (repeatable)")
    bench.add_argument("--duration", type=float, default=None, help="clip length in seconds (default 10.24)")
    _add_unet_work_args(bench)
    bench.add_argument("--warmup", type=int, default=1)
    bench.add_argument("--repeat", type=int, default=3)
    bench.add_argument("--device", default=None)
    bench.add_argument("--option", action="append", metavar="KEY=VALUE",
                       help="backend option for the variants whose backend declares it, e.g. arena=session "
                            "(repeatable)")
    bench.add_argument("--memory-limit-mb", type=int, default=None,
                       help="run each variant in a memory cgroup of this size, no swap (Linux, writable cgroup): "
                            "does it fit, and at what speed")
    bench.add_argument("--work", default=str(Path.home() / ".cache" / "tango-rt" / "bench"),
                       help="where exports for the ONNX / TensorRT variants are cached")
    bench.add_argument("--out", default="bench_results", help="writes results.json, results.md, chart.png")

    srv = sub.add_parser("serve", help="HTTP API with micro-batching, a bounded queue and metrics")
    _add_runtime_args(srv)
    served = Settings("")  # the defaults live there
    srv.add_argument("--preset", default=None, choices=list(PRESETS),
                     help="the defaults of options a request leaves out (default: the original's)")
    srv.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--max-batch", type=int, default=served.max_batch,
                     help="clips per denoising call (capped by the export)")
    srv.add_argument("--max-wait-ms", type=float, default=served.max_wait_ms, help="how long a batch waits to fill up")
    srv.add_argument("--max-queue", type=int, default=served.max_queue, help="requests waiting; beyond it: 429")
    srv.add_argument("--timeout", type=float, default=served.timeout_s,
                     help="seconds a request may take; beyond it: 504, and its rows stop at the next UNet step")
    srv.add_argument("--max-prompt-chars", type=int, default=served.max_prompt_chars, help="longer prompts: 413")
    srv.add_argument("--max-steps", type=int, default=served.max_steps, help="more steps per request: 422")
    srv.add_argument("--max-duration", type=float, default=served.max_duration_s,
                     help="longer clips (seconds): 422")
    srv.add_argument("--max-samples", type=int, default=served.max_samples, help="more clips per request: 422")
    srv.add_argument("--max-body-bytes", type=int, default=served.max_body_bytes,
                     help="larger request bodies: 413 (before they are parsed)")
    srv.add_argument("--max-audio-bytes", type=int, default=served.max_audio_bytes,
                     help="largest input audio file (413); 0 turns audio input off")
    srv.add_argument("--max-audio-seconds", type=float, default=served.max_audio_s,
                     help="longest input audio (seconds, 422)")
    srv.add_argument("--header-timeout", type=float, default=served.header_timeout_s,
                     help="seconds a connection's request headers may take to arrive; beyond it: 408, closed")
    srv.add_argument("--body-timeout", type=float, default=served.body_timeout_s,
                     help="seconds each chunk of a request body may take to arrive; beyond it: 408, closed")
    srv.add_argument("--max-connections", type=int, default=served.max_connections,
                     help="open connections; past it a new one gets 503 and is closed")
    srv.add_argument("--api-key-file", default=None, help="file holding the key clients must send")
    srv.add_argument("--no-ui", action="store_true", help="no playground page at / (the API only)")
    srv.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    srv.add_argument("--ray", action="store_true", help="run on Ray Serve (pip install 'tango-rt[ray]')")
    srv.add_argument("--replicas", type=int, default=1, help="--ray: model replicas")
    srv.add_argument("--num-gpus", type=float, default=0, help="--ray: GPUs per replica")

    load = sub.add_parser("loadtest", help="drive a running server: throughput, latency percentiles, statuses")
    load.add_argument("url", help="server base URL, e.g. http://127.0.0.1:8000")
    load.add_argument("--rate", type=float, default=None, help="open loop: Poisson arrivals per second")
    load.add_argument("--concurrency", type=int, default=4, help="closed loop: clients (when --rate is not given)")
    load.add_argument("--duration", type=float, default=30.0, help="seconds of sending")
    load.add_argument("--requests", type=int, default=None, help="stop after this many requests")
    load.add_argument("--body", default='{"prompt": "An audience cheering and clapping", "steps": 10}',
                      help="JSON request body")
    load.add_argument("--api-key-file", default=None)
    load.add_argument("--timeout", type=float, default=900.0, help="client timeout per request")
    load.add_argument("--out", default=None, help="writes results.json and results.md")

    info = sub.add_parser("info", help="components, parameter counts and configs of a model")
    info.add_argument("--model", default=DEFAULT_MODEL)
    info.add_argument("--clip", default=None, metavar="FILE", help="the settings an audio file tango-rt wrote carries")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _show_warnings() -> None:
    """TangoWarnings as one `tango-rt: warning:` line each; other warnings as Python prints them."""
    import warnings

    original = warnings.showwarning
    if getattr(original, "tango_rt", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, TangoWarning):
            print(f"tango-rt: warning: {message}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    show.tango_rt = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _show_warnings()
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
