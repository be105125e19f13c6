"""Sigma schedules shared by the sigma-parameterised samplers (DPM-Solver++, UniPC, Euler): diffusers' numerics.

sigma(t) = sqrt((1 - alpha_bar_t) / alpha_bar_t); the VP quantities are alpha_t = 1 / sqrt(sigma^2 + 1),
sigma_t = sigma * alpha_t and lambda_t = log(alpha_t) - log(sigma_t) (half the log-SNR).
"""

from __future__ import annotations

import numpy as np

from .config import F32

KARRAS_RHO = 7.0  # Karras et al. 2022, as diffusers


def interpolate(timesteps: np.ndarray, table: np.ndarray) -> np.ndarray:
    """sigma at (possibly fractional) timesteps, linearly interpolated in the float32 table (float64 result)."""
    return np.interp(timesteps, np.arange(len(table)), table)


def karras(sigma_min: float, sigma_max: float, steps: int) -> np.ndarray:
    """Karras et al.'s schedule: `steps` sigmas from sigma_max to sigma_min, evenly spaced in sigma^(1/rho)."""
    ramp = np.linspace(0, 1, steps)
    low, high = sigma_min ** (1 / KARRAS_RHO), sigma_max ** (1 / KARRAS_RHO)
    return (high + ramp * (low - high)) ** KARRAS_RHO


def final_sigma(final_sigmas_type: str, table: np.ndarray) -> float:
    """The sigma a run ends at: 0 ("zero"), or the smallest training sigma ("sigma_min"), as diffusers."""
    return 0.0 if final_sigmas_type == "zero" else float(table[0])


def sigma_to_t(sigmas: np.ndarray, log_table: np.ndarray) -> np.ndarray:
    """Fractional timesteps whose interpolated log-sigma equals each sigma (diffusers' _sigma_to_t)."""
    log_sigma = np.log(np.maximum(sigmas, 1e-10))
    dists = log_sigma[None, :] - log_table[:, None]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=len(log_table) - 2)
    w = np.clip((log_table[low] - log_sigma) / (log_table[low] - log_table[low + 1]), 0, 1)
    return (1 - w) * low + w * (low + 1)


def vp(sigma: np.float32) -> tuple[np.float32, np.float32, np.float32]:
    """(alpha_t, sigma_t, lambda_t) of one float32 sigma; sigma 0 gives lambda +inf, as in torch."""
    sigma = F32(sigma)
    with np.errstate(divide="ignore"):
        alpha = F32(1) / np.sqrt(sigma * sigma + F32(1))
        sigma_t = sigma * alpha
        return alpha, sigma_t, np.log(alpha) - np.log(sigma_t)
