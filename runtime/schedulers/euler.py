"""Euler and Euler ancestral: diffusers' EulerDiscreteScheduler / EulerAncestralDiscreteScheduler in numpy.

Karras et al.'s sigma parameterisation: the latents are x = x0 + sigma * eps (so the initial noise is scaled by
the largest sigma), the UNet sees x / sqrt(sigma^2 + 1), and timesteps may be fractional.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .base import Scheduler, discrete_grid
from .config import F32, sigma_table
from .sigmas import final_sigma, interpolate, karras, sigma_to_t


class EulerDiscreteScheduler(Scheduler):
    """First-order Euler steps of the probability-flow ODE (`euler`); options as diffusers: use_karras_sigmas,
    final_sigmas_type, sigma_min, sigma_max, timestep_spacing."""

    name = "euler"
    defaults: ClassVar[dict[str, Any]] = {"timestep_spacing": "linspace"}

    def validate(self) -> None:
        super().validate()
        self.config.require("final_sigmas_type", ("zero", "sigma_min"))

    def _grid(self, steps: int) -> np.ndarray:
        table = sigma_table(self.alphas_cumprod)
        timesteps = discrete_grid(self.config, steps, dtype=F32, round_linspace=False)
        sigmas = interpolate(timesteps, table)
        if self.config.use_karras_sigmas:
            low = self.config.sigma_min if self.config.sigma_min is not None else float(sigmas[-1])
            high = self.config.sigma_max if self.config.sigma_max is not None else float(sigmas[0])
            sigmas = karras(low, high, steps)
            timesteps = sigma_to_t(sigmas, np.log(table)).astype(F32)
        self.sigmas = np.concatenate([sigmas, [final_sigma(self.config.final_sigmas_type, table)]]).astype(F32)
        largest = self.sigmas.max()
        spread = self.config.timestep_spacing in ("linspace", "trailing")
        self.init_noise_sigma = float(largest if spread else np.sqrt(largest * largest + F32(1)))
        return timesteps

    def sigma(self, index: int) -> float:
        return float(self.sigmas[index])

    def add_noise(self, original: np.ndarray, noise: np.ndarray, index: int) -> np.ndarray:
        """x0 + sigma noise at sigmas[index] (Karras et al.'s parameterisation), as diffusers' Euler schedulers."""
        return original + noise * self.sigmas[index]

    def scale_model_input(self, sample: np.ndarray, index: int) -> np.ndarray:
        sigma = self.sigmas[index]
        return sample / np.sqrt(sigma * sigma + F32(1))

    def _x0(self, model_output: np.ndarray, sigma: np.float32, sample: np.ndarray) -> np.ndarray:
        kind = self.config.prediction_type
        if kind == "v_prediction":
            return model_output * (-sigma / np.sqrt(sigma * sigma + F32(1))) + sample / (sigma * sigma + F32(1))
        if kind == "epsilon":
            return sample - sigma * model_output
        return model_output

    def step(self, model_output, index, sample, noise=None):
        sigma = self.sigmas[index]
        derivative = (sample - self._x0(model_output, sigma, sample)) / sigma
        return sample + derivative * (self.sigmas[index + 1] - sigma)


class EulerAncestralDiscreteScheduler(EulerDiscreteScheduler):
    """Euler steps down to sigma_down plus fresh noise of size sigma_up (`euler-a`); one noise tensor per step,
    the last one included (its sigma_up is 0)."""

    name = "euler-a"

    def validate(self) -> None:
        super().validate()
        self.config.require("prediction_type", ("epsilon", "v_prediction"))
        self.config.require("use_karras_sigmas", (False,))
        self.config.require("final_sigmas_type", ("zero",))

    def needs_noise(self, index: int) -> bool:
        return True

    def step(self, model_output, index, sample, noise=None):
        sigma_from, sigma_to = self.sigmas[index], self.sigmas[index + 1]
        from2, to2 = sigma_from * sigma_from, sigma_to * sigma_to
        sigma_up = np.sqrt(to2 * (from2 - to2) / from2)
        sigma_down = np.sqrt(sigma_to * sigma_to - sigma_up * sigma_up)
        derivative = (sample - self._x0(model_output, sigma_from, sample)) / sigma_from
        prev = sample + derivative * (sigma_down - sigma_from)
        return prev + self._noise(noise, index) * sigma_up
