"""Distributions whose truth is known, for judging samplers and lossy options without trained weights.

A Gaussian mixture has an analytic posterior mean E[x0 | x_t], hence an analytic ideal v-prediction: the UNet a
perfect training run would converge to (IdealDenoiser), and the exact probability-flow ODE solution from any
noise (probability_flow). `sliced_wasserstein` measures how far a sample set is from another. Test
infrastructure: tests/test_sampler_quality.py checks these against their definitions; the trained oracle
(tests/oracle.py) and the studies (studies/sampler_quality, studies/turbo) use them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tango_rt.runtime.schedulers.config import sigma_table
from tango_rt.runtime.schedulers.sigmas import interpolate


@dataclass(frozen=True)
class GaussianMixture:
    """sum_k weights_k N(means_k, scales_k^2 I) in `dim` dimensions, with its exact denoiser."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, dim)
    scales: np.ndarray  # (K,)

    @classmethod
    def random(cls, dim: int = 8, components: int = 4, seed: int = 0) -> GaussianMixture:
        rng = np.random.default_rng(seed)
        directions = rng.standard_normal((components, dim))
        means = 1.5 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
        weights = rng.dirichlet(np.full(components, 2.0))
        return cls(weights, means, rng.uniform(0.2, 0.5, components))

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        k = rng.choice(len(self.weights), size=count, p=self.weights)
        return self.means[k] + self.scales[k, None] * rng.standard_normal((count, self.means.shape[1]))

    def posterior_mean(self, x: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
        """E[x0 | x_t = x] for x_t = alpha x0 + sigma eps (float64)."""
        variance = alpha**2 * self.scales**2 + sigma**2  # (K,) marginal variance of x_t given k
        diff = x[:, None, :] - alpha * self.means[None]  # (N, K, d)
        log_r = np.log(self.weights) - 0.5 * (diff**2).sum(-1) / variance - 0.5 * x.shape[1] * np.log(variance)
        r = np.exp(log_r - log_r.max(axis=1, keepdims=True))
        r /= r.sum(axis=1, keepdims=True)
        gain = alpha * self.scales**2 / variance  # (K,)
        component_means = self.means[None] + gain[None, :, None] * diff
        return (r[..., None] * component_means).sum(1)


class IdealDenoiser:
    """The v-prediction a perfect UNet would output at (fractional) timestep t, on the VP-scaled input."""

    def __init__(self, mixture: GaussianMixture, alphas_cumprod: np.ndarray):
        self.mixture = mixture
        self.sigmas = sigma_table(alphas_cumprod)  # the table the samplers interpolate, so t means the same

    def vp(self, t: float) -> tuple[float, float]:
        sigma = float(interpolate(np.array([t]), self.sigmas)[0])
        alpha = 1.0 / np.sqrt(sigma**2 + 1.0)
        return alpha, sigma * alpha

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        alpha, sigma = self.vp(t)
        x64 = x.astype(np.float64)
        x0 = self.mixture.posterior_mean(x64, alpha, sigma)
        eps = (x64 - alpha * x0) / sigma
        return (alpha * eps - sigma * x0).astype(np.float32)


def probability_flow(x_start: np.ndarray, t_start: float, denoiser: IdealDenoiser, steps: int = 1000) -> np.ndarray:
    """The exact PF-ODE solution from VP sample x_start at t_start to sigma = 0: RK4 on y = x / sigma_t in
    lambda = log(alpha / sigma), where dy / dlambda = e^lambda * x0_hat (Lu et al. 2022), to sigma ~ 1e-6."""
    alpha, sigma = denoiser.vp(t_start)
    start, stop = np.log(alpha / sigma), 14.0
    h = (stop - start) / steps

    def f(y: np.ndarray, lam: float) -> np.ndarray:
        s = 1.0 / np.sqrt(1.0 + np.exp(2 * lam))
        a = s * np.exp(lam)
        return np.exp(lam) * denoiser.mixture.posterior_mean(s * y, a, s)

    y, lam = x_start / sigma, start
    for _ in range(steps):
        k1 = f(y, lam)
        k2 = f(y + h / 2 * k1, lam + h / 2)
        k3 = f(y + h / 2 * k2, lam + h / 2)
        k4 = f(y + h * k3, lam + h)
        y, lam = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), lam + h
    s = 1.0 / np.sqrt(1.0 + np.exp(2 * lam))
    return denoiser.mixture.posterior_mean(s * y, s * np.exp(lam), s)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, projections: int = 128, seed: int = 1) -> float:
    """Mean over random directions of the 1-D Wasserstein-1 distance between the projected sample sets."""
    directions = np.random.default_rng(seed).standard_normal((a.shape[1], projections))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    pa, pb = np.sort(a @ directions, axis=0), np.sort(b @ directions, axis=0)
    return float(np.abs(pa - pb).mean())
