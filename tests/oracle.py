"""A UNet that has learned something, for judging lossy options: a small Tango-shaped UNet trained, in minutes on
2 CPU cores, on a conditional latent distribution whose exact form is known.

    python tests/fixtures/oracle/make_oracle.py     # train, save in the original layout, beside the script

Random weights say nothing about what skipping guidance or reusing deep features does to a trained model's
samples, and the Gaussian-mixture study (sampler_quality) has no UNet inside. This oracle has both: a
diffusers UNet2DConditionModel with Tango's block types (cross-attention to T5 text embeddings; the tiny fixture's
Flan-T5 encodes the prompts), v-prediction, Tango's scheduler config, trained with classifier-free dropout like
the original, on this truth:

    prompt k of PROMPTS -> latents x (8 x 8 x 16) = B a + NOISE * e,
    a ~ sum_m 1/M N(MEANS[k, m], SPREAD^2 I_D),   e ~ N(0, I)

B: D orthonormal smooth patterns (seeded cosines over time and frequency, mixed over the 8 channels), so the
structure lives in a D-dimensional subspace: two modes per prompt, four prompts, every mode elsewhere. Samples are
judged in that subspace (`coefficients`: B^T x) and by their off-subspace residual, where the exact answer is known.
The checkpoint is written in the original Tango layout (main_config.json, pytorch_model_main.bin with text_encoder.*
and unet.*, the tiny fixture's VAE and vocoder), so export and every backend run it. Training is seeded and, on
one machine, deterministic (deterministic torch algorithms, fixed threads).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from truth import sliced_wasserstein

from tango_rt.runtime.guidance import UNetPlan
from tango_rt.runtime.noise import NoiseSource, row_generators
from tango_rt.runtime.presets import FAST

PROMPTS = ("a low electric hum", "birdsong at dawn", "rain on a tin roof", "a dog barks twice")
CHANNELS, FRAMES, BINS = 8, 8, 16
DIMENSIONS = 8  # D: the subspace the structure lives in
MODES = 2  # M: mixture components per prompt
MODE_RADIUS = 16.0  # |MEANS[k, m]| in coefficient units: latents of unit-order magnitude (|x| ~ sqrt(1024))
SPREAD = 3.0  # each mode's standard deviation per coefficient
NOISE = 0.2  # per-element off-subspace noise
SEED = 20261202
LEARNING_RATE = 2e-3
UNET_CONFIG = {  # Tango's block types and layout (runtime/data/unet_config.json), narrow
    "act_fn": "silu", "attention_head_dim": [2, 4, 4, 4], "block_out_channels": [16, 32, 32, 32],
    "center_input_sample": False, "cross_attention_dim": 32,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "dual_cross_attention": False, "flip_sin_to_cos": True, "freq_shift": 0,
    "in_channels": CHANNELS, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
    "norm_num_groups": 8, "num_class_embeds": None, "only_cross_attention": False, "out_channels": CHANNELS,
    "sample_size": [FRAMES, BINS], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                                      "CrossAttnUpBlock2D"],
    "use_linear_projection": True, "upcast_attention": True,
}
TINY = Path(__file__).resolve().parent / "fixtures" / "tango-tiny"  # T5, VAE, vocoder to reuse
SHARED_FILES = ("vae_config.json", "vocoder_config.json", "pytorch_model_vae.bin", "stft_config.json",
                "pytorch_model_stft.bin")


class Truth:
    """The known conditional distribution: basis, per-prompt mode means, sampling and projection."""

    def __init__(self, seed: int = SEED):
        rng = np.random.default_rng(seed)
        t = np.arange(FRAMES)[:, None] / FRAMES
        f = np.arange(BINS)[None, :] / BINS
        patterns = []
        for _ in range(DIMENSIONS):
            ft, fb = rng.integers(0, 3, 2)
            shape = np.cos(2 * np.pi * (ft * t + rng.uniform())) * np.cos(2 * np.pi * (fb * f + rng.uniform()))
            patterns.append(rng.standard_normal(CHANNELS)[:, None, None] * shape[None])
        basis, _ = np.linalg.qr(np.stack([p.ravel() for p in patterns], axis=1))
        self.basis = basis  # (C x F x B, D), orthonormal columns
        directions = rng.standard_normal((len(PROMPTS), MODES, DIMENSIONS))
        self.means = MODE_RADIUS * directions / np.linalg.norm(directions, axis=-1, keepdims=True)

    def coefficients(self, prompt: int, count: int, rng: np.random.Generator) -> np.ndarray:
        modes = rng.integers(0, MODES, count)
        return self.means[prompt, modes] + SPREAD * rng.standard_normal((count, DIMENSIONS))

    def sample(self, prompt: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """(count, 8, 8, 16) float32 latents of `prompt`."""
        x = self.coefficients(prompt, count, rng) @ self.basis.T
        x = x + NOISE * rng.standard_normal(x.shape)
        return x.reshape(count, CHANNELS, FRAMES, BINS).astype(np.float32)

    def project(self, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(coefficients (N, D), off-subspace residual RMS per sample (N,))."""
        flat = latents.reshape(len(latents), -1).astype(np.float64)
        coefficients = flat @ self.basis
        residual = flat - coefficients @ self.basis.T
        return coefficients, np.sqrt((residual**2).mean(axis=1))


def sample(tango, plan: UNetPlan, seed: int = 0, count: int = 256, scheduler: str = FAST["scheduler"],
           options: dict | None = None, steps: int = FAST["steps"], guidance: float = 3.0) -> np.ndarray:
    """(prompts, count, 8, 8, 16) latents of the oracle through the runtime's loop (the fast preset's sampler by
    default), the same seeds for every configuration."""
    pipeline = tango.pipeline
    out = []
    for index, prompt in enumerate(PROMPTS):
        text = pipeline.encode_text([prompt], count, guided=guidance > 1)
        noise = NoiseSource(row_generators(seed + index, count))
        sampler = tango.scheduler(scheduler, **(FAST["scheduler_options"] if options is None else options))
        out.append(pipeline.denoise(text, sampler, steps, guidance, noise, latent_frames=FRAMES, plan=plan))
    return np.stack(out)


def measure(samples: np.ndarray, truth: Truth, reference: np.ndarray | None, truth_sets: list[np.ndarray]) -> dict:
    coefficients = [truth.project(s)[0] for s in samples]
    residual = float(np.mean([truth.project(s)[1].mean() for s in samples]))
    sw = float(np.mean([sliced_wasserstein(c, t) for c, t in zip(coefficients, truth_sets, strict=True)]))
    row = {"sw": sw, "residual_rms": residual}
    if reference is not None:
        row["vs_full"] = float(np.sqrt(np.mean((samples - reference) ** 2) / np.mean(reference**2)))
    return row


def text_conditioning() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings (K, L, 32), masks (K, L), empty-prompt embedding (1, L, 32), its mask) from the tiny fixture's
    T5, through the runtime's own tokenizer and encoder: what generation will feed the UNet."""
    from tango_rt.runtime.tango import Tango

    pipeline = Tango(str(TINY), device="cpu").pipeline
    text = pipeline.encode_text(list(PROMPTS), 1, guided=True)
    half = len(PROMPTS)
    return text.embeddings[half:], text.mask[half:], text.embeddings[:1], text.mask[:1]


def train(steps: int, batch: int = 64, seed: int = SEED, threads: int = 2, progress: bool = True):
    """The trained UNet (diffusers module) after `steps` AdamW steps; deterministic for a seed on one machine."""
    import torch
    from diffusers import UNet2DConditionModel

    from tango_rt.runtime.schedulers import default_scheduler_config
    from tango_rt.runtime.schedulers.config import SchedulerConfig, alphas_cumprod

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    truth, rng = Truth(), np.random.default_rng(seed)
    embeddings, masks, empty, empty_mask = (torch.from_numpy(a) for a in text_conditioning())
    alphas = torch.from_numpy(alphas_cumprod(SchedulerConfig.from_dict(default_scheduler_config())).astype(np.float32))
    unet = UNet2DConditionModel.from_config(UNET_CONFIG).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    warm = max(1, steps // 20)  # linear warm-up, then a cosine decay to 0
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warm) * 0.5 * (
        1 + np.cos(np.pi * min(step, steps) / max(steps, 1))))
    started = time.perf_counter()
    for step in range(steps):
        prompts = rng.integers(0, len(PROMPTS), batch)
        x0 = torch.from_numpy(np.concatenate([truth.sample(int(k), 1, rng) for k in prompts]))
        t = torch.from_numpy(rng.integers(0, len(alphas), batch))
        eps = torch.from_numpy(rng.standard_normal(x0.shape).astype(np.float32))
        a = alphas[t].sqrt()[:, None, None, None]
        s = (1 - alphas[t]).sqrt()[:, None, None, None]
        drop = torch.from_numpy(rng.random(batch) < 0.1)  # classifier-free dropout, as the original trains
        context = torch.where(drop[:, None, None], empty.expand(batch, -1, -1), embeddings[prompts])
        mask = torch.where(drop[:, None], empty_mask.expand(batch, -1), masks[prompts])
        v = unet(a * x0 + s * eps, t.float(), encoder_hidden_states=context, encoder_attention_mask=mask).sample
        loss = torch.nn.functional.mse_loss(v, a * eps - s * x0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress and (step % 100 == 0 or step == steps - 1):
            print(f"step {step}: loss {loss.item():.4f} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    torch.use_deterministic_algorithms(False)
    return unet.eval()


def save_checkpoint(unet, out: Path) -> Path:
    """The original Tango layout: the trained UNet with the tiny fixture's T5 (and its VAE, vocoder, front end,
    tokenizer and scheduler config, linked rather than copied: they are the fixture's own files)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    main = torch.load(TINY / "pytorch_model_main.bin", map_location="cpu", weights_only=True)
    state = {k: v for k, v in main.items() if k.startswith("text_encoder.")}
    state.update({f"unet.{k}": v.detach().clone() for k, v in unet.state_dict().items()})
    torch.save(state, out / "pytorch_model_main.bin")
    for name in (*SHARED_FILES, "flan-t5-tiny", "scheduler"):
        link = out / name
        if link.is_symlink() or link.exists():
            shutil.rmtree(link) if link.is_dir() and not link.is_symlink() else link.unlink()
        link.symlink_to(os.path.relpath(TINY / name, out))
    (out / "diffusion_model_config.json").write_text(json.dumps(
        {"_class_name": "UNet2DConditionModel", **UNET_CONFIG}, indent=2) + "\n")
    main_config = json.loads((TINY / "main_config.json").read_text())
    (out / "main_config.json").write_text(json.dumps(main_config, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "fixtures" / "oracle"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    unet = train(args.steps, args.batch, args.seed)
    out = save_checkpoint(unet, Path(args.out))
    record = {"steps": args.steps, "batch": args.batch, "seed": args.seed, "seconds": time.perf_counter() - started,
              "truth": {"prompts": PROMPTS, "dimensions": DIMENSIONS, "modes": MODES, "mode_radius": MODE_RADIUS,
                        "spread": SPREAD, "noise": NOISE}}
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
