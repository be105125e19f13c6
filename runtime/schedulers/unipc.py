"""UniPC (bh2): diffusers' UniPCMultistepScheduler in numpy, predictor-corrector in data-prediction form.

Zhao et al. 2023: each step first corrects the previous step's result with the new model output (UniC), then
predicts the next sample (UniP); both use the B(h) = e^h - 1 weighting of the "bh2" variant.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .config import F32
from .dpm_solver import MultistepSigmas
from .sigmas import vp


class UniPCMultistepScheduler(MultistepSigmas):
    """UniPC 2M with the bh2 update (`unipc`); options as diffusers: solver_order, solver_type (bh1 | bh2),
    use_karras_sigmas, final_sigmas_type, lower_order_final, disable_corrector."""

    name = "unipc"
    row_state: ClassVar[tuple[str, ...]] = ("history", "last_sample")
    defaults: ClassVar[dict[str, Any]] = {**MultistepSigmas.defaults, "solver_type": "bh2"}

    def validate(self) -> None:
        super().validate()
        self.config.require("solver_type", ("bh1", "bh2"))

    def reset(self) -> None:
        self.history: list[np.ndarray] = []  # data predictions of the last solver_order steps
        self.last_sample: np.ndarray | None = None
        self.order = 1

    def step(self, model_output, index, sample, noise=None):
        x0 = self._x0(model_output, index, sample)
        if index > 0 and index - 1 not in self.config.disable_corrector and self.last_sample is not None:
            sample = self._update(self.last_sample, index - 1, self.order, corrector=x0)
        self.history = [*self.history[-(self.config.solver_order - 1):], x0] if self.config.solver_order > 1 else [x0]
        order = self.config.solver_order
        if self.config.lower_order_final:
            order = min(order, len(self.timesteps) - index)
        self.order = min(order, len(self.history))
        self.last_sample = sample
        return self._update(sample, index, self.order)

    def _coefficients(self, h: np.float32, rks: list[np.float32], order: int):
        """R (Vandermonde in r_k), b and B(h) of the UniPC linear system (diffusers' loop, float32)."""
        hh = -h
        with np.errstate(divide="ignore", invalid="ignore"):
            h_phi_1 = np.expm1(hh)
            h_phi_k = h_phi_1 / hh - F32(1)
            big_b = hh if self.config.solver_type == "bh1" else np.expm1(hh)
            rows, b, factorial = [], [], 1
            for i in range(1, order + 1):
                rows.append(np.array([r ** F32(i - 1) for r in rks], dtype=F32))
                b.append(h_phi_k * F32(factorial) / big_b)
                factorial *= i + 1
                h_phi_k = h_phi_k / hh - F32(1 / factorial)
        return np.stack(rows), np.array(b, dtype=F32), h_phi_1, big_b

    def _update(self, x: np.ndarray, index: int, order: int, corrector: np.ndarray | None = None) -> np.ndarray:
        """UniP from `x` at step `index` to `index + 1`; with `corrector` (the model's x0 at index + 1), UniC."""
        alpha_t, sigma_t, lambda_t = vp(self.sigmas[index + 1])
        _, sigma_s0, lambda_s0 = vp(self.sigmas[index])
        m0 = self.history[-1]
        with np.errstate(over="ignore", invalid="ignore"):
            h = lambda_t - lambda_s0
        rks, d1s = [], []
        for i in range(1, order):
            _, _, lambda_si = vp(self.sigmas[index - i])
            rk = (lambda_si - lambda_s0) / h
            rks.append(rk)
            d1s.append((self.history[-(i + 1)] - m0) / rk)
        rks.append(F32(1))
        r, b, h_phi_1, big_b = self._coefficients(h, rks, order)
        x_t = sigma_t / sigma_s0 * x - alpha_t * h_phi_1 * m0
        if corrector is None:
            if not d1s:
                return x_t
            rhos = np.array([0.5], F32) if order == 2 else np.linalg.solve(r[:-1, :-1], b[:-1]).astype(F32)
            return x_t - alpha_t * big_b * self._combine(rhos, d1s)
        rhos = np.array([0.5], F32) if order == 1 else np.linalg.solve(r, b).astype(F32)
        residual = rhos[-1] * (corrector - m0)
        if d1s:
            residual = self._combine(rhos[:-1], d1s) + residual
        return x_t - alpha_t * big_b * residual

    @staticmethod
    def _combine(weights: np.ndarray, terms: list[np.ndarray]) -> np.ndarray:
        total = weights[0] * terms[0]
        for weight, term in zip(weights[1:], terms[1:], strict=True):
            total = total + weight * term
        return total


