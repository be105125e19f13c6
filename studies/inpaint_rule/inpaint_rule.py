"""Inpainting's re-noising rule, judged on a UNet that has learned something: known latent frames noised back to
each step's level with fresh noise at every step (latent-diffusion / AudioLDM) or with the run's initial noise
(diffusers' inpainting pipelines), under DDPM 100 (the original's sampler) and the fast and turbo presets
(multistep UniPC, which keeps a history of model outputs).

    python studies/inpaint_rule/inpaint_rule.py --oracle tests/fixtures/oracle --out studies/inpaint_rule/results

The trained oracle's truth (tests/oracle.py) is a Gaussian mixture over whole latents, x ~ sum_m 1/M N(B mu_m,
SPREAD^2 B B^T + NOISE^2 I); conditioned on the known frames x_K it is again a mixture over the unknown frames
x_U, each component the Gaussian conditional N(mu_U + S_UK S_KK^-1 (x_K - mu_K), S_UU - S_UK S_KK^-1 S_KU)
reweighted by how likely it makes x_K. So every inpainted span has an exact answer. Per prompt, KNOWN_CLIPS true
clips are drawn, their middle frames hidden, and COUNT inpaintings of each made (guidance 1: the truth is the
model's own conditional distribution), measured by
- `sw`: the sliced Wasserstein-1 distance between the inpaintings and as many samples of the true conditional,
  in the subspace where the truth's structure lives (oracle.Truth.project of the whole clip; the known frames are
  the same in both, so only the span moves it), averaged; next to the floor two true sample sets reach;
- `seam`: the RMS jump across the span's two edges (frame to frame, all channels and bins) against the true
  conditional's: 1.0 is a seam as smooth as the data's own, above 1 a visible edge;
- `residual`: the off-subspace RMS of the inpainted frames against the truth's NOISE (0.2): texture that is not
  the data's.
The better rule (lower `sw` on most samplers, the seam not worse) is runtime/editing/masked.RENOISE.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tango_rt.benchmarks.machine import machine_info
from tango_rt.benchmarks.report import save_study
from tango_rt.runtime.editing.masked import RENOISE_RULES, Edit
from tango_rt.runtime.guidance import UNetPlan
from tango_rt.runtime.noise import NoiseSource, row_generators
from tango_rt.runtime.presets import PRESETS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))  # test infrastructure (the exact answers)
from oracle import CHANNELS, FRAMES, MODES, NOISE, PROMPTS, SPREAD, Truth
from truth import sliced_wasserstein

COUNT = 128  # inpaintings per known clip
KNOWN_CLIPS = 2  # true clips per prompt whose span is hidden
SPAN = (3, 6)  # hidden latent frames [3, 6) of 8: the middle, with known frames on both sides
SAMPLERS = {  # label -> (scheduler, steps, scheduler options, plan arguments)
    "ddpm 100": ("ddpm", 100, {}, {}),
    "fast": (PRESETS["fast"]["scheduler"], PRESETS["fast"]["steps"], PRESETS["fast"]["scheduler_options"], {}),
    "turbo": (PRESETS["turbo"]["scheduler"], PRESETS["turbo"]["steps"], PRESETS["turbo"]["scheduler_options"],
              {k: PRESETS["turbo"][k] for k in ("guidance_interval", "cache_interval")}),
}


def known_mask() -> np.ndarray:
    """(1, frames) bool: True where the frame is the source's."""
    known = np.ones((1, FRAMES), dtype=bool)
    known[0, SPAN[0]:SPAN[1]] = False
    return known


class Conditional:
    """The truth given the known frames of one clip: a mixture over the unknown entries, sampled exactly."""

    def __init__(self, truth: Truth, prompt: int, clip: np.ndarray):
        flat_known = np.broadcast_to(known_mask()[0][None, :, None], clip.shape).ravel()
        self.k, self.u, self.clip = np.flatnonzero(flat_known), np.flatnonzero(~flat_known), clip.ravel()
        basis = truth.basis
        cov = SPREAD**2 * basis @ basis.T + NOISE**2 * np.eye(len(basis))
        means = truth.means[prompt] @ basis.T  # (M, entries)
        offsets = self.clip[self.k] - means[:, self.k]  # (M, |K|)
        # one solve against S_KK for both the gain S_KK^-1 S_KU and the whitened offsets S_KK^-1 (x_K - mu_K)
        solved = np.linalg.solve(cov[np.ix_(self.k, self.k)], np.hstack([cov[np.ix_(self.k, self.u)], offsets.T]))
        gain, whitened = solved[:, : len(self.u)].T, solved[:, len(self.u) :].T  # S_UK S_KK^-1; (M, |K|)
        self.means = means[:, self.u] + offsets @ gain.T
        logits = -0.5 * np.einsum("mi,mi->m", offsets, whitened)
        likelihood = np.exp(logits - logits.max())
        self.weights = likelihood / likelihood.sum()
        self.chol = np.linalg.cholesky(cov[np.ix_(self.u, self.u)] - gain @ cov[np.ix_(self.k, self.u)])

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """(count, C, frames, bins): the known frames as given, the span drawn from the true conditional."""
        modes = rng.choice(len(self.weights), count, p=self.weights)
        out = np.tile(self.clip, (count, 1))
        out[:, self.u] = self.means[modes] + rng.standard_normal((count, len(self.u))) @ self.chol.T
        return out.reshape(count, CHANNELS, FRAMES, -1)


def seam(clips: np.ndarray) -> float:
    """RMS jump across the span's two edges."""
    jumps = [clips[:, :, SPAN[0]] - clips[:, :, SPAN[0] - 1], clips[:, :, SPAN[1]] - clips[:, :, SPAN[1] - 1]]
    return float(np.sqrt(np.mean(np.square(jumps))))


def inpaint(tango, prompt: int, clip: np.ndarray, rule: str, sampler: str, seed: int, count: int) -> np.ndarray:
    """`count` inpaintings of `clip`'s span through the runtime's masked loop."""
    scheduler, steps, options, plan = SAMPLERS[sampler]
    pipeline = tango.pipeline
    text = pipeline.encode_text([PROMPTS[prompt]], count, guided=False)
    edit = Edit(np.repeat(clip[None].astype(np.float32), count, axis=0), known=known_mask(), renoise=rule)
    return pipeline.denoise(text, tango.scheduler(scheduler, **options), steps, 1.0,
                            NoiseSource(row_generators(seed, count)), latent_frames=FRAMES, edit=edit,
                            plan=UNetPlan.of(plan.get("guidance_interval"), plan.get("cache_interval", 1)))


def evaluate(oracle: str, count: int = COUNT, clips: int = KNOWN_CLIPS, samplers: tuple[str, ...] = tuple(SAMPLERS),
             prompts: tuple[int, ...] = tuple(range(len(PROMPTS)))) -> dict:
    from tango_rt import Tango

    tango, truth = Tango(oracle, device="cpu"), Truth()
    rng = np.random.default_rng(11)
    cases = [(k, truth.sample(k, 1, rng)[0]) for k in prompts for _ in range(clips)]
    exact = [Conditional(truth, k, clip) for k, clip in cases]
    sets = [(c.sample(count, rng), c.sample(count, rng)) for c in exact]
    floor = float(np.mean([sliced_wasserstein(truth.project(a)[0], truth.project(b)[0]) for a, b in sets]))
    true_seam = float(np.mean([seam(a) for a, _ in sets]))
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for sampler in samplers:
        for rule in RENOISE_RULES:
            made = [inpaint(tango, k, clip, rule, sampler, 100 + i, count) for i, (k, clip) in enumerate(cases)]
            rows.setdefault(sampler, {})[rule] = {
                "sw": float(np.mean([sliced_wasserstein(truth.project(m)[0], truth.project(a)[0])
                                     for m, (a, _) in zip(made, sets, strict=True)])),
                "seam": float(np.mean([seam(m) for m in made])) / true_seam,
                "residual": float(np.mean([_span_residual(truth, m) for m in made])),
            }
    return {"count": count, "known_clips_per_prompt": clips, "span_frames": list(SPAN), "modes": MODES,
            "floor_sw": floor, "rows": rows, "choice": choose(rows)}


def _span_residual(truth: Truth, clips: np.ndarray) -> float:
    """Off-subspace RMS of the inpainted frames."""
    flat = clips.reshape(len(clips), -1)
    residual = (flat - (flat @ truth.basis) @ truth.basis.T).reshape(clips.shape)[:, :, SPAN[0]:SPAN[1]]
    return float(np.sqrt(np.mean(np.square(residual))))


def choose(rows: dict) -> str:
    """The rule with the lower `sw` on most samplers (ties: the current default's first-listed rule)."""
    wins = {rule: sum(r[rule]["sw"] <= min(v["sw"] for v in r.values()) for r in rows.values())
            for rule in RENOISE_RULES}
    return max(RENOISE_RULES, key=lambda rule: wins[rule])


def table(result: dict) -> str:
    lines = [f"Floor (two true sample sets of {result['count']}): sw {result['floor_sw']:.3f}. Seam 1.00 = as "
             f"smooth as the data; residual: the truth's is {NOISE}.", "",
             "| sampler | rule | sw | sw / floor | seam | residual |", "|---|---|---|---|---|---|"]
    for sampler, by_rule in result["rows"].items():
        for rule, row in by_rule.items():
            lines.append(f"| {sampler} | {rule} | {row['sw']:.3f} | {row['sw'] / result['floor_sw']:.2f}x | "
                         f"{row['seam']:.2f} | {row['residual']:.3f} |")
    lines += ["", f"Chosen rule: **{result['choice']}**."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oracle", default="tests/fixtures/oracle", help="the trained oracle checkpoint")
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--clips", type=int, default=KNOWN_CLIPS, help="known clips per prompt")
    parser.add_argument("--out", default="studies/inpaint_rule/results")
    args = parser.parse_args(argv)
    result = evaluate(args.oracle, args.count, args.clips)
    save_study(Path(args.out), __file__, argv, machine_info(), result, "Inpainting's re-noising rule", table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
