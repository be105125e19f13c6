"""`tango-rt bench`: per-stage latency, real-time factor, throughput and memory for several backends, one run.

Each variant runs in a child process of its own, one after another, so that its peak memory is its own and a
lean variant never imports torch; timings are wall-clock around each stage of real generations. Speed is
reported as a ratio against the torch (eager, FP32) variant of the same run: these machines are noisy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..runtime.artifacts import is_artifact, open_artifact
from ..runtime.errors import InputError, TangoError
from .machine import machine_info
from .stats import speedup

PROMPT = "An audience cheering and clapping"
BASELINE = "torch"
DEFAULT_WORK = Path.home() / ".cache" / "tango-rt" / "bench"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Variant:
    """A backend at a precision: "torch", "torch:fp16", "onnxruntime", "onnxruntime:int8", "tensorrt", ..."""

    name: str
    backend: str
    precision: str

    @classmethod
    def parse(cls, text: str) -> Variant:
        backend, _, precision = text.strip().partition(":")
        precision = precision or "fp32"
        allowed = {"torch": ("fp32", "fp16"), "onnxruntime": ("fp32", "fp16", "int8"), "tensorrt": ("fp16", "fp32")}
        if backend not in allowed or precision not in allowed[backend]:
            choices = [f"{b}:{p}" for b, ps in allowed.items() for p in ps]
            raise InputError(f"unknown bench variant {text!r}; choose from {choices}")
        return cls(text.strip(), backend, precision)


@dataclass
class BenchConfig:
    model: str
    variants: list[str]
    batches: list[int]
    steps: int = 10
    scheduler: str = "ddim"
    guidance: float = 3.0
    warmup: int = 1
    repeat: int = 3
    device: str | None = None
    prompt: str = PROMPT


def onnx_folder(source: str, precision: str, work: Path) -> Path:
    """An ONNX export of `source` at `precision`: the source itself when it is one, else a cached export."""
    from ..export.onnx_export import reuse_or_export

    if is_artifact(source):
        have = open_artifact(source).manifest.get("precision")
        if have != precision:
            raise InputError(f"{source} is a {have} export; this variant needs a {precision} one")
        return Path(source)
    return reuse_or_export(source, work / f"{source.replace('/', '_').replace(':', '-')}-{precision}", precision)


def prepare(config: BenchConfig, work: Path) -> dict[str, dict]:
    """Child job per variant: which model folder, backend and options it loads."""
    jobs = {}
    for variant in map(Variant.parse, config.variants):
        if variant.backend == "torch":
            model, options = config.model, {"precision": variant.precision}
        elif variant.backend == "onnxruntime":
            model, options = str(onnx_folder(config.model, variant.precision, work)), {}
        else:
            from ..engines.build import reuse_or_build

            onnx = onnx_folder(config.model, variant.precision, work)
            model, options = str(reuse_or_build(onnx, onnx.parent / f"{onnx.name}-engines")), {}
        jobs[variant.name] = {"variant": asdict(variant), "model": model, "options": options,
                              "config": asdict(config)}
    return jobs


def run_child(job: dict) -> dict:
    """Measure one variant in a fresh interpreter; its JSON result comes back on stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "tango_rt.benchmarks.child", json.dumps(job)],
        stdout=subprocess.PIPE, stderr=None, text=True,
    )
    if result.returncode != 0:
        return {"error": f"variant {job['variant']['name']} failed (exit {result.returncode}); see stderr above"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def ratios(variants: dict[str, dict]) -> dict:
    """Speed-up of every variant over the torch baseline, per batch size and stage (median per generation)."""
    base = variants.get(BASELINE)
    if not base or "error" in base:
        return {}
    table: dict = {}
    for name, result in variants.items():
        if "error" in result:
            continue
        for batch, run in result["batches"].items():
            ref = base["batches"].get(batch)
            if ref is None:
                continue
            stages = {stage: speedup(ref["per_generation"][stage], s) for stage, s in run["per_generation"].items()}
            stages["unet_step"] = speedup(ref["stages"]["unet_step"], run["stages"]["unet_step"])
            stages["end_to_end"] = speedup(ref["end_to_end"], run["end_to_end"])
            table.setdefault(name, {})[batch] = stages
    return table


def run_bench(config: BenchConfig, work: Path = DEFAULT_WORK, command: str = "") -> dict:
    if BASELINE not in config.variants:
        print(f"note: no '{BASELINE}' variant: no speed-up ratios will be reported", file=sys.stderr)
    machine = machine_info()  # before the run: the revision measured, not one edited meanwhile
    jobs = prepare(config, work)
    results = {}
    for index, (name, job) in enumerate(jobs.items(), 1):
        print(f"[{index}/{len(jobs)}] {name}: measuring ...", file=sys.stderr, flush=True)
        results[name] = run_child(job)
    return {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "config": asdict(config),
        "variants": results,
        "speedup_vs_torch": ratios(results),
    }


def main(args) -> int:
    """Entry point of `tango-rt bench` (arguments parsed by tango_rt.cli)."""
    from .report import write_reports

    if args.random_weights and args.model:
        raise InputError("give either --model or --random-weights, not both")
    model = f"random:{args.random_weights}" if args.random_weights else (args.model or "declare-lab/tango2")
    try:
        batches = [int(b) for b in str(args.batch).split(",")]
    except ValueError:
        raise InputError(f"--batch takes comma-separated integers, got {args.batch!r}") from None
    config = BenchConfig(
        model=model, variants=[v.strip() for v in args.backends.split(",") if v.strip()], batches=batches,
        steps=args.steps, scheduler=args.scheduler, warmup=args.warmup, repeat=args.repeat, device=args.device,
    )
    for variant in config.variants:
        Variant.parse(variant)
    if min(batches) < 1 or config.repeat < 1 or config.steps < 1 or config.warmup < 0:
        raise InputError("--batch, --repeat and --steps must be >= 1, --warmup >= 0")
    command = "tango-rt bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "tango-rt bench"
    result = run_bench(config, Path(args.work), command)
    table = write_reports(result, Path(args.out))
    print(table)
    failed = [name for name, r in result["variants"].items() if "error" in r]
    if failed:
        raise TangoError(f"variant(s) {failed} failed; the others are in {args.out}")
    return 0
