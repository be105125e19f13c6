"""Less UNet work per clip, judged on a UNet that has learned something: guidance intervals, cached deep features,
BF16 and INT8 weights against the fast preset, on the trained oracle (tests/oracle.py), whose exact answer
is known.

    python studies/turbo/turbo.py --oracle tests/fixtures/oracle --out studies/turbo/results

Every configuration samples the same seeds (COUNT clips per prompt, all four prompts) through the runtime's own
loop (`TangoPipeline.denoise` with a `UNetPlan`), and is measured by
- `sw`: the sliced Wasserstein-1 distance between its samples and fresh samples of the true conditional
  distribution, in the subspace where the truth's structure lives (oracle.Truth.project), averaged over the
  prompts; next to the floor two independent true sample sets of the same size reach (sampler_quality's rule);
- `vs_full`: the RMS distance of its samples to the fast preset's from the same seeds, relative to their RMS:
  what the shortcut changes in the clips themselves;
- `gflop`: analytic UNet GFLOP of one 10.24 s clip of the full-size Tango UNet with this plan (runtime/flops.py).
The turbo preset is the configuration with the fewest UNet GFLOP per clip whose `sw` is within 10% of the fast
preset's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from tango_rt.benchmarks.machine import machine_info
from tango_rt.benchmarks.report import save_study
from tango_rt.runtime.config import CACHE_CUT
from tango_rt.runtime.flops import UNetShape, run_gflop
from tango_rt.runtime.guidance import UNetPlan
from tango_rt.runtime.presets import PRESETS
from tango_rt.runtime.specs import TYPICAL_TEXT_LEN

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))  # test infrastructure (the exact answers)
from oracle import PROMPTS, Truth, measure, sample
from truth import sliced_wasserstein

COUNT = 256  # clips per prompt
FAST = {"scheduler": PRESETS["fast"]["scheduler"], "options": PRESETS["fast"]["scheduler_options"],
        "steps": PRESETS["fast"]["steps"], "guidance": 3.0}  # the fast preset, at the original's guidance
TOLERANCE = 1.10  # the turbo rule: sw within 10% of the fast preset's
# label -> UNetPlan arguments (on the fast preset's sampler)
PLANS = {
    "fast preset": {},
    "guidance (0.3, 5]": {"guidance_interval": (0.3, 5.0)},
    "guidance (0.5, 3]": {"guidance_interval": (0.5, 3.0)},
    "guidance (1, 15]": {"guidance_interval": (1.0, 15.0)},
    "guidance (0, 2]": {"guidance_interval": (0.0, 2.0)},
    "cache 2": {"cache_interval": 2},
    "cache 3": {"cache_interval": 3},
    "cache 4": {"cache_interval": 4},
    "cache 2 center": {"cache_interval": 2, "cache_schedule": "center"},
    "cache 3 center": {"cache_interval": 3, "cache_schedule": "center"},
    "cache 4 center": {"cache_interval": 4, "cache_schedule": "center"},
    "guidance (0.3, 5] + cache 2": {"guidance_interval": (0.3, 5.0), "cache_interval": 2},
    "guidance (0.3, 5] + cache 3": {"guidance_interval": (0.3, 5.0), "cache_interval": 3},
    "guidance (0.3, 5] + cache 3 center": {"guidance_interval": (0.3, 5.0), "cache_interval": 3,
                                           "cache_schedule": "center"},
    "guidance (0.5, 3] + cache 2": {"guidance_interval": (0.5, 3.0), "cache_interval": 2},
    "guidance (0.5, 3] + cache 3": {"guidance_interval": (0.5, 3.0), "cache_interval": 3},
    "guidance (0.5, 3] + cache 3 center": {"guidance_interval": (0.5, 3.0), "cache_interval": 3,
                                           "cache_schedule": "center"},
    "guidance (0.5, 3] + cache 4": {"guidance_interval": (0.5, 3.0), "cache_interval": 4},
    "guidance (0.5, 3] + cache 5": {"guidance_interval": (0.5, 3.0), "cache_interval": 5},
    "guidance (0, 2] + cache 3": {"guidance_interval": (0.0, 2.0), "cache_interval": 3},
    "guidance (1, 15] + cache 3": {"guidance_interval": (1.0, 15.0), "cache_interval": 3},
}
TURBO_LABEL = "guidance (0.5, 3] + cache 4"  # the plan this study chose: the turbo preset (runtime/presets.py)
FULL_SIZE = {"frames": 256, "bins": 16, "text_len": TYPICAL_TEXT_LEN}  # the clip GFLOP are counted for


def gflop(plan: UNetPlan, tango, shape: UNetShape, steps: int = FAST["steps"], scheduler: str = FAST["scheduler"],
          options: dict | None = None, guidance: float = FAST["guidance"]) -> tuple[float, int, int]:
    """(UNet GFLOP of one full-size 10.24 s clip, full calls, shallow calls) with this plan."""
    sampler = tango.scheduler(scheduler, **(FAST["options"] if options is None else options))
    sampler.set_timesteps(steps)
    calls = plan.calls(sampler, range(steps), guidance > 1)
    total = run_gflop(shape, calls, 1, FULL_SIZE["frames"], FULL_SIZE["bins"], FULL_SIZE["text_len"], CACHE_CUT)
    return total, sum(k == "full" for k, _ in calls), sum(k == "shallow" for k, _ in calls)


def evaluate(oracle: str, lean: dict[str, object] | None = None, count: int = COUNT, presets_only: bool = False
             ) -> dict:
    """Every plan on torch FP32; the fast preset, the turbo preset and the original default (DDPM 100) too; then
    the fast and turbo presets on each `lean` variant (label -> a loaded Tango), e.g. OpenVINO BF16. With
    `presets_only`, the FP32 rows are the two presets' alone (the plan sweep is the study's first question)."""
    from tango_rt.runtime.checkpoint import package_data
    from tango_rt.runtime.tango import Tango

    tango = Tango(oracle, device="cpu")
    truth = Truth()
    rng = np.random.default_rng(99)
    truth_sets = [truth.coefficients(k, count, rng) for k in range(len(PROMPTS))]
    floor_sets = [truth.coefficients(k, count, rng) for k in range(len(PROMPTS))]
    floor = float(np.mean([sliced_wasserstein(a, b) for a, b in zip(floor_sets, truth_sets, strict=True)]))
    full_size = UNetShape.from_config(package_data("unet_config.json"))
    rows, reference = {}, None
    plans = {label: PLANS[label] for label in ("fast preset", TURBO_LABEL)} if presets_only else PLANS
    for label, arguments in plans.items():
        plan = UNetPlan.of(**arguments)
        started = time.perf_counter()
        samples = sample(tango, plan, count=count)
        reference = samples if reference is None else reference
        total, full, shallow = gflop(plan, tango, full_size)
        rows[label] = {**measure(samples, truth, reference, truth_sets), "gflop": total, "full_calls": full,
                       "shallow_calls": shallow, "plan": arguments, "seconds": time.perf_counter() - started}
        print(f"{label}: {rows[label]}", file=sys.stderr)
    if not presets_only:
        ddpm = {"scheduler": "ddpm", "options": {}, "steps": 100}
        samples = sample(tango, UNetPlan(), count=count, **ddpm)
        rows["original default (DDPM 100)"] = {**measure(samples, truth, None, truth_sets),
                                               "gflop": gflop(UNetPlan(), tango, full_size, 100, "ddpm", {})[0],
                                               "plan": {}, "sampler": ddpm}
    turbo = choose_turbo(rows, plans)
    for variant, model in (lean or {}).items():
        for label in ("fast preset", turbo):
            samples = sample(model, UNetPlan.of(**rows[label]["plan"]), count=count)
            rows[f"{label}, {variant}"] = {**measure(samples, truth, reference, truth_sets),
                                           "gflop": rows[label]["gflop"], "plan": rows[label]["plan"]}
    return {"floor_sw": floor, "count_per_prompt": count, "rows": rows, "turbo": turbo,
            "fast_preset": {k: v for k, v in FAST.items()}, "tolerance": TOLERANCE, "cut": CACHE_CUT}


def choose_turbo(rows: dict, plans: dict = PLANS) -> str:
    """The fewest GFLOP per clip among the FP32 plans within TOLERANCE of the fast preset's distance."""
    limit = TOLERANCE * rows["fast preset"]["sw"]
    fits = [label for label in plans if rows[label]["sw"] <= limit]
    return min(fits, key=lambda label: (rows[label]["gflop"], rows[label]["sw"]))


def table(result: dict) -> str:
    fast = result["rows"]["fast preset"]
    lines = [f"Sliced W1 to the true conditional distribution ({result['count_per_prompt']} clips x "
             f"{len(PROMPTS)} prompts; floor {result['floor_sw']:.3f}), distance to the fast preset's clips from "
             f"the same seeds, and UNet GFLOP per full-size 10.24 s clip (cached steps enter the last up block at "
             f"resnet {result['cut']}):", "",
             "| configuration | sw | sw / fast preset | vs fast preset (rel. RMS) | GFLOP per clip | x fewer GFLOP "
             "| full / shallow UNet calls | off-subspace RMS (truth 0.2) |",
             "|---|---|---|---|---|---|---|---|"]
    for label, row in result["rows"].items():
        mark = " **(turbo)**" if label == result["turbo"] else ""
        lines.append(f"| {label}{mark} | {row['sw']:.3f} | {row['sw'] / fast['sw']:.2f} | "
                     f"{row.get('vs_full', float('nan')):.3f} | {row['gflop']:.0f} | "
                     f"{fast['gflop'] / row['gflop']:.2f} | {row.get('full_calls', '-')} / "
                     f"{row.get('shallow_calls', '-')} | {row['residual_rms']:.3f} |")
    return "\n".join(lines)


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 5.5))
    fast = result["rows"]["fast preset"]["sw"]
    for label, row in result["rows"].items():
        axes.scatter(row["gflop"], row["sw"], s=20)
        axes.annotate(label, (row["gflop"], row["sw"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
    axes.axhline(result["floor_sw"], color="gray", linestyle=":", label="sampling floor")
    axes.axhline(TOLERANCE * fast, color="tab:red", linestyle="--", label="fast preset + 10%")
    axes.set_xscale("log")
    axes.set_xlabel("UNet GFLOP per full-size 10.24 s clip")
    axes.set_ylabel("sliced W1 to the true distribution")
    axes.set_title("Less UNet work on the trained oracle")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oracle", default="tests/fixtures/oracle", help="the trained oracle checkpoint")
    parser.add_argument("--export", default=None, help="its FP32 ONNX export (--max-batch at least --count): adds "
                        "OpenVINO BF16 rows")
    parser.add_argument("--int8-export", default=None, help="its int8-weights export: adds OpenVINO INT8 rows")
    parser.add_argument("--w8a8-export", default=None, help="its w8a8 export (calibrated on the shipped prompts, "
                        "not the oracle's): adds W8A8 rows on ONNX Runtime and OpenVINO")
    parser.add_argument("--presets-only", action="store_true", help="FP32 rows of the two presets only")
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--out", default="studies/turbo/results")
    args = parser.parse_args(argv)
    from tango_rt.runtime.tango import Tango

    lean = {}
    if args.export:
        lean["OpenVINO BF16"] = Tango(args.export, backend="openvino", precision="bf16", cache_dir="")
    if args.int8_export:
        lean["OpenVINO INT8 weights"] = Tango(args.int8_export, backend="openvino", cache_dir="")
    if args.w8a8_export:
        lean["ONNX Runtime W8A8"] = Tango(args.w8a8_export, backend="onnxruntime")
        lean["OpenVINO W8A8"] = Tango(args.w8a8_export, backend="openvino", cache_dir="")
    machine = machine_info()
    result = evaluate(args.oracle, lean, args.count, args.presets_only)
    text = table(result)
    out = Path(args.out)
    save_study(out, __file__, argv, machine, result, "Turbo preset", text)
    chart(result, out / "chart.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
