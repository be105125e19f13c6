"""DPM-Solver++ (2M) and its SDE variant: diffusers' DPMSolverMultistepScheduler in numpy.

Lu et al. 2022: a second-order multistep solver of the diffusion ODE in data-prediction form, with
log-SNR steps h = lambda_t - lambda_s. The SDE variant adds fresh noise at every step (one tensor per step from
the loop's NoiseSource, the last step's included: its coefficient is 0 with final sigma 0).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .base import Scheduler, solver_grid
from .config import F32, sigma_table
from .sigmas import final_sigma, interpolate, karras, sigma_to_t, vp


class MultistepSigmas(Scheduler):
    """The sigma grid and x0 conversion DPM-Solver++ and UniPC share (diffusers: the same set_timesteps)."""

    defaults: ClassVar[dict[str, Any]] = {"timestep_spacing": "linspace"}

    def validate(self) -> None:
        super().validate()
        self.config.require("final_sigmas_type", ("zero", "sigma_min"))
        self.config.require("solver_order", (1, 2))

    def _grid(self, steps: int) -> np.ndarray:
        table = sigma_table(self.alphas_cumprod)
        lambdas = np.log(np.sqrt(self.alphas_cumprod)) - np.log(np.sqrt(F32(1) - self.alphas_cumprod))
        clipped = np.searchsorted(lambdas[::-1], self.config.lambda_min_clipped)
        timesteps = solver_grid(self.config, steps, self.config.num_train_timesteps - int(clipped))
        if self.config.use_karras_sigmas:
            sigmas = karras(*self._karras_range(table), steps)
            timesteps = sigma_to_t(sigmas, np.log(table)).round().astype(np.int64)
        else:
            sigmas = interpolate(timesteps, table)
        self.sigmas = np.concatenate([sigmas, [final_sigma(self.config.final_sigmas_type, table)]]).astype(F32)
        return timesteps

    def sigma(self, index: int) -> float:
        return float(self.sigmas[index])

    def add_noise(self, original: np.ndarray, noise: np.ndarray, index: int) -> np.ndarray:
        """alpha_t x0 + sigma_t noise at sigmas[index] (VP form of the sigma), as diffusers' DPM-Solver / UniPC."""
        alpha_t, sigma_t, _ = vp(self.sigmas[index])
        return alpha_t * original + sigma_t * noise

    def _karras_range(self, table: np.ndarray) -> tuple[float, float]:
        low = self.config.sigma_min if self.config.sigma_min is not None else float(table[0])
        high = self.config.sigma_max if self.config.sigma_max is not None else float(table[-1])
        return low, high

    def _x0(self, model_output: np.ndarray, index: int, sample: np.ndarray) -> np.ndarray:
        """The data prediction both solvers step with."""
        alpha_t, sigma_t, _ = vp(self.sigmas[index])
        kind = self.config.prediction_type
        if kind == "v_prediction":
            return alpha_t * sample - sigma_t * model_output
        if kind == "epsilon":
            return (sample - sigma_t * model_output) / alpha_t
        return model_output


class DPMSolverMultistepScheduler(MultistepSigmas):
    """DPM-Solver++ 2M (`dpm++`); options as diffusers: solver_order, solver_type (midpoint | heun),
    use_karras_sigmas, final_sigmas_type, lower_order_final, euler_at_final."""

    name = "dpm++"
    row_state: ClassVar[tuple[str, ...]] = ("history",)

    def validate(self) -> None:
        super().validate()
        self.config.require("algorithm_type", ("dpmsolver++", "sde-dpmsolver++"))
        self.config.require("solver_type", ("midpoint", "heun"))

    @property
    def sde(self) -> bool:
        return self.config.algorithm_type == "sde-dpmsolver++"

    def reset(self) -> None:
        self.history: list[np.ndarray] = []

    def needs_noise(self, index: int) -> bool:
        return self.sde

    def _order(self, index: int) -> int:
        n, c = len(self.timesteps), self.config
        final_first_order = c.euler_at_final or (c.lower_order_final and n < 15) or c.final_sigmas_type == "zero"
        last = index == n - 1 and final_first_order
        return 1 if c.solver_order == 1 or len(self.history) < 2 or last else 2

    def step(self, model_output, index, sample, noise=None):
        x0 = self._x0(model_output, index, sample)
        self.history = [*self.history[-1:], x0]
        order = self._order(index)
        noise = self._noise(noise, index) if self.sde else None
        alpha_t, sigma_t, lambda_t = vp(self.sigmas[index + 1])
        _, sigma_s0, lambda_s0 = vp(self.sigmas[index])
        with np.errstate(over="ignore", invalid="ignore"):
            h = lambda_t - lambda_s0
            decay = np.exp(-h)
        if order == 1:
            d0, d1 = x0, None
        else:
            _, _, lambda_s1 = vp(self.sigmas[index - 1])
            r0 = (lambda_s0 - lambda_s1) / h
            d0, d1 = x0, (F32(1) / r0) * (x0 - self.history[0])
        return self._sde_update(sample, d0, d1, h, decay, alpha_t, sigma_t, sigma_s0, noise) if self.sde else \
            self._ode_update(sample, d0, d1, h, decay, alpha_t, sigma_t, sigma_s0)

    def _ode_update(self, sample, d0, d1, h, decay, alpha_t, sigma_t, sigma_s0):
        x = (sigma_t / sigma_s0) * sample - (alpha_t * (decay - F32(1))) * d0
        if d1 is None:
            return x
        if self.config.solver_type == "midpoint":
            return x - F32(0.5) * (alpha_t * (decay - F32(1))) * d1
        return x + (alpha_t * ((decay - F32(1)) / h + F32(1))) * d1

    def _sde_update(self, sample, d0, d1, h, decay, alpha_t, sigma_t, sigma_s0, noise):
        with np.errstate(over="ignore"):
            decay2 = np.exp(F32(-2.0) * h)
        x = (sigma_t / sigma_s0 * decay) * sample + (alpha_t * (F32(1) - decay2)) * d0
        if d1 is not None:
            if self.config.solver_type == "midpoint":
                x = x + F32(0.5) * (alpha_t * (F32(1) - decay2)) * d1
            else:
                x = x + (alpha_t * ((F32(1) - decay2) / (F32(-2.0) * h) + F32(1))) * d1
        return x + sigma_t * np.sqrt(F32(1) - decay2) * noise


class DPMSolverSDEScheduler(DPMSolverMultistepScheduler):
    """DPM-Solver++ 2M SDE (`dpm++sde`): diffusers' DPMSolverMultistepScheduler with
    algorithm_type="sde-dpmsolver++"; one noise tensor per step."""

    name = "dpm++sde"
    forced: ClassVar[dict[str, Any]] = {"algorithm_type": "sde-dpmsolver++"}
