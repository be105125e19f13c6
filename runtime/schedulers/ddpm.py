"""DDPM and DDIM: the original Tango's sampler and its deterministic alternative (diffusers' numerics)."""

from __future__ import annotations

import numpy as np

from .base import Scheduler, discrete_grid
from .config import F32


class _AlphaScheduler(Scheduler):
    """Shared by DDPM and DDIM: the x0 / epsilon prediction from the model output."""

    def _grid(self, steps: int) -> np.ndarray:
        return discrete_grid(self.config, steps)

    def add_noise(self, original: np.ndarray, noise: np.ndarray, index: int) -> np.ndarray:
        """sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise at t = timesteps[index], as diffusers."""
        if index >= len(self.timesteps):
            return original
        alpha = self.alphas_cumprod[self.timesteps[index]]
        return np.sqrt(alpha) * original + np.sqrt(F32(1) - alpha) * noise

    def _predict(self, model_output: np.ndarray, t: int, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x0 clipped as the config says, epsilon from the unclipped x0), in diffusers' operation order."""
        alpha_t = self.alphas_cumprod[t]
        beta_t = F32(1) - alpha_t
        kind = self.config.prediction_type
        if kind == "epsilon":
            x0 = (sample - np.sqrt(beta_t) * model_output) / np.sqrt(alpha_t)
            eps = model_output
        elif kind == "v_prediction":
            x0 = np.sqrt(alpha_t) * sample - np.sqrt(beta_t) * model_output
            eps = np.sqrt(alpha_t) * model_output + np.sqrt(beta_t) * sample
        else:
            x0 = model_output
            eps = (sample - np.sqrt(alpha_t) * x0) / np.sqrt(beta_t)
        if self.config.clip_sample:
            r = F32(self.config.clip_sample_range)
            x0 = np.clip(x0, -r, r)
        return x0, eps


class DDPMScheduler(_AlphaScheduler):
    """Ancestral DDPM sampling with the "fixed_small" variance: Tango's default sampler.

    Draws a noise tensor at every step with t > 0, the last one included (its variance is ~0 there)."""

    name = "ddpm"

    def validate(self) -> None:
        super().validate()
        self.config.require("variance_type", ("fixed_small",))

    def needs_noise(self, index: int) -> bool:
        return bool(self.timesteps[index] > 0)

    def step(self, model_output, index, sample, noise=None):
        t = int(self.timesteps[index])
        last = index == len(self.timesteps) - 1
        alpha_t = self.alphas_cumprod[t]
        alpha_prev = F32(1) if last else self.alphas_cumprod[int(self.timesteps[index + 1])]
        beta_t, beta_prev = F32(1) - alpha_t, F32(1) - alpha_prev
        current_alpha = alpha_t / alpha_prev
        current_beta = F32(1) - current_alpha
        x0, _ = self._predict(model_output, t, sample)
        x0_coeff = (np.sqrt(alpha_prev) * current_beta) / beta_t
        sample_coeff = np.sqrt(current_alpha) * beta_prev / beta_t
        prev = x0_coeff * x0 + sample_coeff * sample
        if self.needs_noise(index):
            variance = max(beta_prev / beta_t * current_beta, F32(1e-20))
            prev = prev + np.sqrt(variance) * self._noise(noise, index)
        return prev


class DDIMScheduler(_AlphaScheduler):
    """Deterministic DDIM (eta = 0): the same latents always give the same audio."""

    name = "ddim"

    def step(self, model_output, index, sample, noise=None):
        t = int(self.timesteps[index])
        prev_t = t - self.config.num_train_timesteps // len(self.timesteps)
        if prev_t >= 0:
            alpha_prev = self.alphas_cumprod[prev_t]
        else:
            alpha_prev = F32(1) if self.config.set_alpha_to_one else self.alphas_cumprod[0]
        x0, eps = self._predict(model_output, t, sample)
        return np.sqrt(alpha_prev) * x0 + np.sqrt(F32(1) - alpha_prev) * eps
