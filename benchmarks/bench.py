"""`tango-rt bench`: per-stage latency, real-time factor, throughput and memory for several backends, one run.

Each variant runs in a child process of its own (benchmarks/child.py), one after another, so that its peak
memory is its own and a lean variant never imports torch; timings are wall-clock around each stage of real
generations. Every variant also runs the UNet once on one fixed input, and the report gives its error against
the baseline variant's output (cosine, SNR, max rel): precision and speed in one table. Speed is reported as a
ratio against the baseline (the first variant) of the same run: these machines are noisy.

Variants are `backend[:precision][+graph]` with backends and precisions from the backend registry
(runtime/backends/registry.py); `+graph` replays the UNet from CUDA graphs where the backend offers it. Presets
bundle the variants of one question (`--suite gpu`: every GPU path of the former GPU check script); `--preset fast |
turbo` times the named sampling presets (runtime/presets.py), as `--preset` does everywhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..export.check import compare
from ..runtime.artifacts import is_artifact, open_artifact
from ..runtime.backends.registry import BACKENDS, get_backend
from ..runtime.config import DEFAULT_MAX_BATCH
from ..runtime.errors import InputError, TangoError
from ..runtime.precision import BF16, INT8, W8A8
from ..runtime.schedulers.config import option_pairs
from .machine import machine_info
from .memory_limit import MemoryLimit, evict_page_cache
from .stats import speedup

PROMPT = "An audience cheering and clapping"
DEFAULT_WORK = Path.home() / ".cache" / "tango-rt" / "bench"
SCHEMA_VERSION = 2
SUITES = {
    "gpu": {"backends": "torch,torch:fp16,torch:fp16+graph,onnxruntime:fp16,tensorrt", "device": "cuda",
            "random_weights": "full", "steps": 20, "batch": "1"},
    "cpu": {"backends": "torch,onnxruntime,onnxruntime:int8", "device": "cpu", "random_weights": "full",
            "steps": 2, "batch": "1,2"},
}


@dataclass(frozen=True)
class Variant:
    """A backend at a precision, optionally with CUDA graphs: "torch", "torch:fp16+graph", "tensorrt", ..."""

    name: str
    backend: str
    precision: str
    cuda_graph: bool = False

    @classmethod
    def parse(cls, text: str) -> Variant:
        spec = text.strip()
        body, graph = (spec[: -len("+graph")], True) if spec.endswith("+graph") else (spec, False)
        name, _, precision = body.partition(":")
        try:
            backend = get_backend(name)
        except TangoError:
            backend = None
        precision = precision or (backend.default_precision if backend else "")
        if backend is None or precision not in backend.precisions or (graph and "cuda_graph" not in backend.options):
            choices = [f"{b.name}:{p}" for b in BACKENDS.values() for p in b.precisions]
            raise InputError(f"unknown bench variant {text!r}; choose from {choices} (add +graph for CUDA graphs "
                             "where the backend has them)")
        return cls(spec, backend.name, precision, graph)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}" + (" + CUDA graph" if self.cuda_graph else "")


@dataclass
class BenchConfig:
    model: str
    variants: list[str]
    batches: list[int]
    steps: int = 10
    scheduler: str = "ddim"
    scheduler_options: dict = field(default_factory=dict)  # --scheduler-option KEY=VALUE (the fast preset's Karras)
    guidance: float = 3.0
    duration: float | None = None
    warmup: int = 1
    repeat: int = 3
    device: str | None = None
    prompt: str = PROMPT
    suite: str | None = None
    preset: str | None = None  # the sampling preset (runtime/presets.py) the steps, sampler and plan came from
    memory_limit_mb: int | None = None  # each variant runs in a memory cgroup of this size (memory_limit.py)
    options: dict = field(default_factory=dict)  # --option KEY=VALUE: for the variants whose backend declares KEY
    # --guidance-interval / --cache-interval / --cache-schedule: Tango's keyword arguments (runtime/guidance.py)
    unet_work: dict = field(default_factory=lambda: {"guidance_interval": None, "cache_interval": 1,
                                                     "cache_schedule": "uniform"})


def onnx_folder(source: str, precision: str, work: Path, max_batch: int) -> Path:
    """An ONNX export of `source` at `precision` declared for `max_batch` clips per call: the source itself when
    it is one, else a cached export (re-exported when the cached one's batch range is too small)."""
    from ..export.onnx_export import reuse_or_export

    if is_artifact(source):
        artifact = open_artifact(source)
        have = artifact.manifest.get("precision")
        if have != precision:
            raise InputError(f"{source} is a {have} export; this variant needs a {precision} one")
        if artifact.ranges["batch"].max < max_batch:
            raise InputError(f"{source} is declared for at most {artifact.ranges['batch'].max} clips per call; "
                             f"--batch {max_batch} needs a re-export with --max-batch {max_batch}")
        return Path(source)
    folder = work / f"{source.replace('/', '_').replace(':', '-')}-{precision}"
    return reuse_or_export(source, folder, precision, max_batch=max(max_batch, DEFAULT_MAX_BATCH))


def arithmetic(export_precision: str, options: dict, device: str | None) -> str | None:
    """What the UNet's GEMMs and convolutions mostly compute in, for the machine's peak (benchmarks/machine.py):
    int8 for the W8A8 and dynamic-INT8 exports, bf16 when the backend is asked for it, else fp32; None on a GPU
    (no CPU peak applies)."""
    if device and str(device).startswith("cuda"):
        return None
    if export_precision in (W8A8, INT8):
        return "int8"
    return "bf16" if options.get("precision") == BF16 else "fp32"


def prepare(config: BenchConfig, work: Path) -> dict[str, dict]:
    """Child job per variant: which model folder, backend and options it loads."""
    jobs = {}
    max_batch = max(config.batches)
    for variant in map(Variant.parse, config.variants):
        backend = get_backend(variant.backend)
        export_precision, options = backend.variant(variant.precision)
        options.update({k: v for k, v in config.options.items() if k in backend.options})
        if variant.cuda_graph:
            options["cuda_graph"] = True
        if backend.loads_from == "checkpoint":
            model = config.model
        else:
            model = str(onnx_folder(config.model, export_precision, work, max_batch))
        if "tensorrt" in backend.artifact_formats:
            from ..engines.build import reuse_or_build

            model = str(reuse_or_build(Path(model), Path(model).parent / f"{Path(model).name}-engines"))
        jobs[variant.name] = {"variant": asdict(variant), "label": variant.label, "model": model,
                              "options": options, "config": asdict(config),
                              "arithmetic": arithmetic(export_precision, options, config.device),
                              "probe": str(work / f"probe-{len(jobs)}.npy")}
    return jobs


def run_child(job: dict) -> dict:
    """Measure one variant in a fresh interpreter (inside a memory cgroup with the config's memory limit); its
    JSON result comes back on stdout, its log on stderr (shown as it runs, and its tail kept in the error when the
    child fails)."""
    command = [sys.executable, "-m", "tango_rt.benchmarks.child", json.dumps(job)]
    limit_mb = job["config"].get("memory_limit_mb")
    if not limit_mb:
        return _run(command, job)
    if Path(job["model"]).is_dir():
        evict_page_cache(Path(job["model"]))  # else its weight files stay charged to whoever read them first
    with MemoryLimit(limit_mb) as limit:
        result = _run(limit.wrap(command), job)
        result["memory_limit"] = report = limit.report()
    if "error" in result and report["oom_kills"]:
        result["error"] = f"killed out of memory under the {limit_mb} MB limit ({result['error']})"
    return result


def _run(command: list[str], job: dict) -> dict:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tail: list[str] = []
    assert process.stderr is not None
    for line in process.stderr:
        sys.stderr.write(line)
        tail = [*tail[-19:], line.rstrip()]
    stdout = process.stdout.read() if process.stdout else ""
    if process.wait() != 0:
        reason = next((line for line in reversed(tail) if line.strip()), "no output")
        return {"error": f"variant {job['variant']['name']} failed (exit {process.returncode}): {reason}",
                "stderr_tail": tail}
    return json.loads(stdout.strip().splitlines()[-1])


def ratios(variants: dict[str, dict], baseline: str) -> dict:
    """Speed-up of every variant over the baseline, per batch size and stage (median per generation)."""
    base = variants.get(baseline)
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


def probe_errors(jobs: dict[str, dict], results: dict[str, dict], baseline: str) -> None:
    """Each variant's UNet output on the shared probe input against the baseline's: cosine, SNR, max rel."""
    reference_path = Path(jobs[baseline]["probe"])
    if not reference_path.is_file():
        return
    reference = np.load(reference_path)
    for name, job in jobs.items():
        path = Path(job["probe"])
        if "error" not in results[name] and path.is_file():
            results[name]["unet_vs_baseline"] = compare(np.load(path), reference)


def run_bench(config: BenchConfig, work: Path = DEFAULT_WORK, command: str = "") -> dict:
    machine = machine_info()  # before the run: the revision measured, not one edited meanwhile
    work.mkdir(parents=True, exist_ok=True)
    jobs = prepare(config, work)
    baseline = next(iter(jobs))
    results = {}
    for index, (name, job) in enumerate(jobs.items(), 1):
        print(f"[{index}/{len(jobs)}] {name}: measuring ...", file=sys.stderr, flush=True)
        results[name] = run_child(job)
    probe_errors(jobs, results, baseline)
    return {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "config": asdict(config),
        "baseline": baseline,
        "variants": results,
        "speedup_vs_baseline": ratios(results, baseline),
    }


def parse_options(pairs: list[str] | None) -> dict:
    """--option KEY=VALUE pairs as backend options: true / false and integers converted, the rest strings."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--option takes KEY=VALUE, got {pair!r}")
        converted: object = {"true": True, "false": False}.get(value.lower(), value)
        options[key.strip()] = int(value) if value.lstrip("-").isdigit() else converted
    return options


def _settings(args) -> dict:
    """Command-line values over the suite's over the defaults."""
    suite = SUITES.get(args.suite, {}) if args.suite else {}
    if args.suite and args.suite not in SUITES:
        raise InputError(f"unknown suite {args.suite!r}; choose from {sorted(SUITES)}")
    given = {k: getattr(args, k) for k in ("backends", "device", "random_weights", "steps", "batch")}
    return {k: given[k] if given[k] is not None else suite.get(k) for k in given}


def sampling(args, steps: int | None) -> dict:
    """The sampling of every generation, checked as a request's: the command line's flags over the sampling
    preset's (--preset) over bench's defaults (DDIM, 10 steps: timing needs few)."""
    from ..runtime.request import GenerationRequest

    given = {"steps": steps, "scheduler": args.scheduler, "scheduler_options": option_pairs(args.scheduler_option)
             or None, "guidance_interval": args.guidance_interval, "cache_interval": args.cache_interval,
             "cache_schedule": args.cache_schedule, "preset": args.preset}
    request = GenerationRequest.build([PROMPT], **{"steps": 10, "scheduler": "ddim", **{
        k: v for k, v in given.items() if v is not None}}, explicit=[k for k, v in given.items() if v is not None])
    plan = request.plan
    return {"steps": request.steps, "scheduler": request.scheduler, "scheduler_options": request.sampler_options,
            "unet_work": {"guidance_interval": None if plan.guidance_interval is None else
                          [plan.guidance_interval.low, plan.guidance_interval.high],
                          "cache_interval": plan.cache_interval, "cache_schedule": plan.cache_schedule}}


def main(args) -> int:
    """Entry point of `tango-rt bench` (arguments parsed by tango_rt.cli)."""
    from .report import write_reports

    settings = _settings(args)
    if settings["random_weights"] and args.model:
        raise InputError("give either --model or --random-weights, not both")
    weights = settings["random_weights"]
    model = f"random:{weights}" if weights else (args.model or "declare-lab/tango2")
    try:
        batches = [int(b) for b in str(settings["batch"] or "1").split(",")]
    except ValueError:
        raise InputError(f"--batch takes comma-separated integers, got {settings['batch']!r}") from None
    backends = settings["backends"] or "torch,onnxruntime"
    config = BenchConfig(
        model=model, variants=[v.strip() for v in backends.split(",") if v.strip()], batches=batches,
        duration=args.duration, warmup=args.warmup, repeat=args.repeat, device=settings["device"], suite=args.suite,
        preset=args.preset, memory_limit_mb=args.memory_limit_mb, options=parse_options(args.option),
        **sampling(args, settings["steps"]),  # bad values: an error now, not in every child
    )
    declared = {key for variant in config.variants for key in get_backend(Variant.parse(variant).backend).options}
    if set(config.options) - declared:
        raise InputError(f"--option {sorted(set(config.options) - declared)}: no variant's backend takes it "
                         f"(they take {sorted(declared)})")
    if min(batches) < 1 or config.repeat < 1 or config.steps < 1 or config.warmup < 0:
        raise InputError("--batch, --repeat and --steps must be >= 1, --warmup >= 0")
    if config.memory_limit_mb is not None:
        if config.memory_limit_mb < 64:
            raise InputError(f"--memory-limit-mb must be at least 64, got {config.memory_limit_mb}")
        MemoryLimit(config.memory_limit_mb)  # no writable cgroup: say so before exporting anything
    command = "tango-rt bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "tango-rt bench"
    result = run_bench(config, Path(args.work), command)
    table = write_reports(result, Path(args.out))
    print(table)
    failed = [name for name, r in result["variants"].items() if "error" in r]
    if failed:
        raise TangoError(f"variant(s) {failed} failed; the others are in {args.out}")
    return 0
