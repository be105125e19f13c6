"""Sampler quality without trained weights: every sampler driven by the exact denoiser of a known distribution.

    python studies/sampler_quality/sampler_quality.py --out studies/sampler_quality/results

If the data are a Gaussian mixture, x0 ~ sum_k pi_k N(mu_k, s_k^2 I), the noisy sample x_t = alpha_t x0 +
sigma_t eps has an analytic posterior mean E[x0 | x_t] (each component's Gaussian posterior, weighted by its
responsibility), hence an analytic ideal v-prediction v = alpha_t eps_hat - sigma_t x0_hat: the UNet a perfect
training run would converge to. Each sampler then runs exactly as in the pipeline (same config, timesteps,
input scaling, noise draws) with that denoiser in place of the UNet, and we measure
- `sw`: the sliced Wasserstein-1 distance between its samples and fresh samples of the true mixture (how far
  the *distribution* is off), next to the floor two independent true sample sets reach;
- `pf`: for deterministic samplers, the RMS distance to the exact probability-flow ODE solution from the same
  initial noise (a 1000-step RK4 in log-SNR), i.e. the discretisation error alone.
The recommended fast preset is the sampler and step count with the fewest denoiser calls whose `sw` is within
the original default's (DDPM, 100 steps).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from tango_rt.benchmarks.machine import machine_info
from tango_rt.runtime.noise import row_generators
from tango_rt.runtime.schedulers import SCHEDULER_NAMES, default_scheduler_config, make_scheduler

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))  # test infrastructure (the exact answers)
from truth import GaussianMixture, IdealDenoiser, probability_flow, sliced_wasserstein

STEPS = (5, 8, 10, 15, 20, 25, 30, 50, 100, 200)
# label -> (sampler name, options): every name with its defaults, plus Karras sigmas where users turn them on
SAMPLERS = {
    **{name: (name, {}) for name in SCHEDULER_NAMES},
    "dpm++ karras": ("dpm++", {"use_karras_sigmas": True}),
    "dpm++sde karras": ("dpm++sde", {"use_karras_sigmas": True}),
    "unipc karras": ("unipc", {"use_karras_sigmas": True}),
    "euler karras": ("euler", {"use_karras_sigmas": True}),
}
DETERMINISTIC = ("ddim", "dpm++", "unipc", "euler")
BASELINE = ("ddpm", 100)  # the original Tango's default


def run_sampler(name: str, steps: int, denoiser: IdealDenoiser, count: int, dim: int, seed: int,
                options: dict | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """The pipeline's loop (runtime/pipeline.py) with the ideal denoiser for the UNet and no guidance. Returns
    the samples, and where the run started: its initial latents as a VP sample and the timestep they are at."""
    scheduler = make_scheduler(name, default_scheduler_config(), **(options or {}))
    scheduler.set_timesteps(steps)
    generators = row_generators(seed, count)
    x = np.stack([g.standard_normal(dim, dtype=np.float32) for g in generators]) * np.float32(
        scheduler.init_noise_sigma)
    start = scheduler.scale_model_input(x, 0).astype(np.float64), float(scheduler.timesteps[0])
    for index, t in enumerate(scheduler.timesteps):
        output = denoiser(scheduler.scale_model_input(x, index), float(t))
        noise = np.stack([g.standard_normal(dim, dtype=np.float32) for g in generators]) \
            if scheduler.needs_noise(index) else None
        x = scheduler.step(output, index, x, noise)
    return x.astype(np.float64), *start


def evaluate(steps_list=STEPS, samplers=tuple(SAMPLERS), count: int = 4096, dim: int = 8, seed: int = 0) -> dict:
    mixture = GaussianMixture.random(dim, seed=seed)
    denoiser = IdealDenoiser(mixture, make_scheduler("ddpm").alphas_cumprod)
    truth = mixture.sample(count, np.random.default_rng(seed + 100))
    floor = sliced_wasserstein(mixture.sample(count, np.random.default_rng(seed + 200)), truth)
    rows: dict[str, dict[str, dict]] = {}
    references: dict[tuple[str, float], np.ndarray] = {}
    for label in samplers:
        name, options = SAMPLERS[label]
        for steps in steps_list:
            samples, start, t0 = run_sampler(name, steps, denoiser, count, dim, seed, options)
            row = {"sw": sliced_wasserstein(samples, truth), "calls": steps}
            if name in DETERMINISTIC:
                key = (name, t0) if name == "euler" else ("vp", t0)
                if key not in references:
                    references[key] = probability_flow(start, t0, denoiser)
                row["pf"] = float(np.sqrt(((samples - references[key]) ** 2).mean()))
            rows.setdefault(label, {})[str(steps)] = row
    return {"floor_sw": floor, "rows": rows, "mixture": {"dim": dim, "components": len(mixture.weights),
                                                         "count": count, "seed": seed}}


FLOOR_MARGIN = 1.1  # "converged": within 10% of the best distribution error any sampler reaches


def _fewest_calls(result: dict, limit: float) -> dict:
    calls, sw, label, steps = min((row["calls"], row["sw"], label, int(steps))
                                  for label, rows in result["rows"].items()
                                  for steps, row in rows.items() if row["sw"] <= limit)
    scheduler, options = SAMPLERS[label]
    return {"label": label, "scheduler": scheduler, "options": options, "steps": steps, "sw": sw,
            "call_ratio": BASELINE[1] / calls}


def recommend(result: dict) -> dict:
    """The recommended preset: the fewest UNet calls that reach the converged distribution error (within 10% of
    the best any sampler reaches, and no worse than the original default DDPM 100). Also the most aggressive
    choice: the fewest calls merely no worse than DDPM 100."""
    target = result["rows"][BASELINE[0]][str(BASELINE[1])]["sw"]
    best = min(row["sw"] for rows in result["rows"].values() for row in rows.values())
    return {**_fewest_calls(result, min(target, FLOOR_MARGIN * best)), "baseline": list(BASELINE),
            "baseline_sw": target, "best_sw": best, "aggressive": _fewest_calls(result, target)}


def markdown(result: dict) -> str:
    steps = list(next(iter(result["rows"].values())))
    rec = result["recommended"]
    lines = [
        "# Sampler quality on an exact denoiser (Gaussian mixture)", "",
        f"Command: `{result['command']}`. Machine: {result['machine']['cpu']}. "
        f"{result['mixture']['count']} samples of a {result['mixture']['components']}-component mixture in "
        f"{result['mixture']['dim']} dimensions; Tango's scheduler config; each name as diffusers' class.", "",
        f"Sliced Wasserstein-1 distance to the true distribution (floor for {result['mixture']['count']} samples: "
        f"{result['floor_sw']:.4f}):", "",
        "| sampler | " + " | ".join(steps) + " |", "|---|" + "---|" * len(steps),
    ]
    for name, rows in result["rows"].items():
        lines.append(f"| {name} | " + " | ".join(f"{rows[s]['sw']:.4f}" for s in steps) + " |")
    lines += ["", "RMS distance to the exact probability-flow ODE solution from the same noise (deterministic "
              "samplers; discretisation error):", "", "| sampler | " + " | ".join(steps) + " |",
              "|---|" + "---|" * len(steps)]
    for name, rows in result["rows"].items():
        if "pf" in rows[steps[0]]:
            lines.append(f"| {name} | " + " | ".join(f"{rows[s]['pf']:.4f}" for s in steps) + " |")
    fast = rec["aggressive"]
    lines += ["", f"Recommended fast preset: **{rec['label']} with {rec['steps']} steps** (sliced W1 "
              f"{rec['sw']:.4f}): the fewest UNet calls whose distribution error has converged (within "
              f"{FLOOR_MARGIN - 1:.0%} of the best any sampler reaches, {rec['best_sw']:.4f}) and is no worse "
              "than the original default "
              f"{BASELINE[0]} {BASELINE[1]} steps ({rec['baseline_sw']:.4f}): {rec['call_ratio']:.1f}x fewer UNet "
              f"calls than the original default. The most aggressive choice merely matching {BASELINE[0]} "
              f"{BASELINE[1]}: {fast['label']} with {fast['steps']} steps ({fast['sw']:.4f}, "
              f"{fast['call_ratio']:.1f}x fewer calls)."]
    return "\n".join(lines) + "\n"


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for index, (name, rows) in enumerate(result["rows"].items()):
        steps = [int(s) for s in rows]
        style = {"marker": "o", "label": name, "color": f"C{index % 10}",
                 "linestyle": "--" if "karras" in name else "-"}
        axes[0].plot(steps, [rows[s]["sw"] for s in rows], **style)
        if "pf" in rows[str(steps[0])]:
            axes[1].plot(steps, [rows[s]["pf"] for s in rows], **style)
    axes[0].axhline(result["floor_sw"], color="gray", linestyle=":", label="sampling floor")
    for ax, title in zip(axes, ("distance to the true distribution (sliced W1)",
                                "distance to the exact PF-ODE solution (RMS)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("steps (UNet calls per guided row)")
        ax.set_title(title, fontsize="medium")
        ax.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="studies/sampler_quality/results")
    parser.add_argument("--count", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--steps", default=",".join(map(str, STEPS)))
    parser.add_argument("--render", action="store_true", help="rewrite results.md / chart.png from results.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.render:
        result = json.loads((out / "results.json").read_text())
        result["recommended"] = recommend(result)
        return _write(result, out)
    started = time.perf_counter()
    steps = tuple(int(s) for s in args.steps.split(","))
    result = evaluate(steps, count=args.count, dim=args.dim)
    result.update(command="python studies/sampler_quality/sampler_quality.py " + " ".join(argv or []),
                  machine=machine_info(), seconds=time.perf_counter() - started)
    if str(BASELINE[1]) in result["rows"][BASELINE[0]]:
        result["recommended"] = recommend(result)
    return _write(result, out)


def _write(result: dict, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    if "recommended" in result:
        (out / "results.md").write_text(markdown(result))
        chart(result, out / "chart.png")
        print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
