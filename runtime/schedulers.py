"""Numpy DDPM and DDIM samplers that reproduce diffusers' float32 numerics.

Small, config-driven classes in the spirit of diffusers' schedulers, without torch. Coefficients are float32
scalars combined in diffusers' operation order, and `alphas_cumprod` is rebuilt the way torch computes it
(linspace filled from both ends with a fused multiply-add, cumprod accumulated in float64), so the trajectories
match diffusers bit for bit on CPU except where torch's float32 sqrt is not correctly rounded.

Usage: `timesteps = s.set_timesteps(steps)`, then for each step `sample = s.step(model_output, i, sample, noise)`
where `noise` is one standard-normal array per step for which `s.needs_noise(i)` is true, else None.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any, ClassVar

import numpy as np

from .errors import InputError

F32 = np.float32


@dataclass(frozen=True)
class SchedulerConfig:
    """The subset of diffusers' scheduler config that inference reads; unknown keys are ignored."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    trained_betas: tuple[float, ...] | None = None
    prediction_type: str = "epsilon"
    steps_offset: int = 0
    timestep_spacing: str = "leading"
    set_alpha_to_one: bool = True
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    variance_type: str = "fixed_small"
    thresholding: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SchedulerConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        if "trained_betas" in values:
            values["trained_betas"] = tuple(values["trained_betas"])
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        checks = {
            "beta_schedule": (self.beta_schedule, ("linear", "scaled_linear")),
            "prediction_type": (self.prediction_type, ("epsilon", "v_prediction", "sample")),
            "timestep_spacing": (self.timestep_spacing, ("leading", "trailing", "linspace")),
            "variance_type": (self.variance_type, ("fixed_small",)),
        }
        for key, (value, allowed) in checks.items():
            if value not in allowed and not (key == "beta_schedule" and self.trained_betas):
                raise InputError(f"scheduler config: {key}={value!r} is not supported (supported: {allowed})")
        if self.thresholding:
            raise InputError("scheduler config: thresholding=true is not supported")


def default_scheduler_config() -> dict[str, Any]:
    """The Stable Diffusion 2.1 scheduler config every Tango model uses, shipped with the package."""
    text = resources.files("tango_rt.runtime").joinpath("data/scheduler_config.json").read_text()
    return json.loads(text)


def _torch_linspace(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace in float32: each half is computed from its own end with one rounding (an FMA)."""
    start32, end32 = F32(start), F32(end)
    step = F32((end32 - start32) / F32(steps - 1))
    index = np.arange(steps, dtype=np.float64)
    from_start = np.float64(start32) + np.float64(step) * index
    from_end = np.float64(end32) - np.float64(step) * (steps - 1 - index)
    return np.where(index < steps / 2, from_start, from_end).astype(F32)


def alphas_cumprod(config: SchedulerConfig) -> np.ndarray:
    """Cumulative product of (1 - beta) as torch computes it: float32 betas, float64 accumulation."""
    n = config.num_train_timesteps
    if config.trained_betas:
        betas = np.asarray(config.trained_betas, dtype=F32)
    elif config.beta_schedule == "linear":
        betas = _torch_linspace(config.beta_start, config.beta_end, n)
    else:  # scaled_linear
        root = _torch_linspace(config.beta_start**0.5, config.beta_end**0.5, n)
        betas = root * root
    alphas = F32(1) - betas
    return np.cumprod(alphas.astype(np.float64)).astype(F32)


def _timesteps(config: SchedulerConfig, steps: int) -> np.ndarray:
    n = config.num_train_timesteps
    if not 1 <= steps <= n:
        raise InputError(f"steps must be between 1 and {n}, got {steps}")
    if config.timestep_spacing == "leading":
        ts = (np.arange(steps) * (n // steps)).round()[::-1].astype(np.int64) + config.steps_offset
    elif config.timestep_spacing == "trailing":
        ts = np.round(np.arange(n, 0, -n / steps)).astype(np.int64) - 1
    else:
        ts = np.linspace(0, n - 1, steps).round()[::-1].astype(np.int64)
    return ts.copy()


class Scheduler:
    """Shared state: the alpha table, the timestep grid and the x0 prediction all samplers use."""

    name: ClassVar[str]
    stochastic: ClassVar[bool]
    init_noise_sigma: float = 1.0

    def __init__(self, config: SchedulerConfig | dict[str, Any] | None = None):
        if config is None:
            config = default_scheduler_config()
        self.config = config if isinstance(config, SchedulerConfig) else SchedulerConfig.from_dict(config)
        self.alphas_cumprod = alphas_cumprod(self.config)
        self.timesteps = np.zeros(0, dtype=np.int64)

    def set_timesteps(self, steps: int) -> np.ndarray:
        self.timesteps = _timesteps(self.config, steps)
        return self.timesteps

    def needs_noise(self, index: int) -> bool:
        """Whether step `index` draws a Gaussian noise tensor (diffusers draws it for every t > 0)."""
        return False

    def noise_count(self) -> int:
        return sum(self.needs_noise(i) for i in range(len(self.timesteps)))

    def _alpha(self, t: int) -> np.float32:
        return self.alphas_cumprod[t]

    def _pred_original(self, model_output: np.ndarray, t: int, sample: np.ndarray) -> np.ndarray:
        alpha_t = self._alpha(t)
        beta_t = F32(1) - alpha_t
        kind = self.config.prediction_type
        if kind == "epsilon":
            x0 = (sample - np.sqrt(beta_t) * model_output) / np.sqrt(alpha_t)
        elif kind == "v_prediction":
            x0 = np.sqrt(alpha_t) * sample - np.sqrt(beta_t) * model_output
        else:
            x0 = model_output
        if self.config.clip_sample:
            r = F32(self.config.clip_sample_range)
            x0 = np.clip(x0, -r, r)
        return x0

    def step(self, model_output: np.ndarray, index: int, sample: np.ndarray, noise: np.ndarray | None = None):
        raise NotImplementedError


class DDPMScheduler(Scheduler):
    """Ancestral DDPM sampling with the "fixed_small" variance (Tango's default sampler)."""

    name = "ddpm"
    stochastic = True

    def needs_noise(self, index: int) -> bool:
        return bool(self.timesteps[index] > 0)

    def _prev_alpha(self, index: int) -> np.float32:
        last = index == len(self.timesteps) - 1
        return F32(1) if last else self._alpha(int(self.timesteps[index + 1]))

    def step(self, model_output: np.ndarray, index: int, sample: np.ndarray, noise: np.ndarray | None = None):
        t = int(self.timesteps[index])
        alpha_t, alpha_prev = self._alpha(t), self._prev_alpha(index)
        beta_t, beta_prev = F32(1) - alpha_t, F32(1) - alpha_prev
        current_alpha = alpha_t / alpha_prev
        current_beta = F32(1) - current_alpha
        x0 = self._pred_original(model_output, t, sample)
        x0_coeff = (np.sqrt(alpha_prev) * current_beta) / beta_t
        sample_coeff = np.sqrt(current_alpha) * beta_prev / beta_t
        prev = x0_coeff * x0 + sample_coeff * sample
        if self.needs_noise(index):
            if noise is None:
                raise InputError(f"ddpm step {index} (t={t}) needs a noise tensor")
            variance = max(beta_prev / beta_t * current_beta, F32(1e-20))
            prev = prev + np.sqrt(variance) * noise
        return prev


class DDIMScheduler(Scheduler):
    """Deterministic DDIM (eta = 0): the same seed and latents always give the same audio."""

    name = "ddim"
    stochastic = False

    def step(self, model_output: np.ndarray, index: int, sample: np.ndarray, noise: np.ndarray | None = None):
        t = int(self.timesteps[index])
        prev_t = t - self.config.num_train_timesteps // len(self.timesteps)
        alpha_t = self._alpha(t)
        if prev_t >= 0:
            alpha_prev = self._alpha(prev_t)
        else:
            alpha_prev = F32(1) if self.config.set_alpha_to_one else self._alpha(0)
        beta_t = F32(1) - alpha_t
        x0 = self._pred_original(model_output, t, sample)
        if self.config.prediction_type == "v_prediction":
            eps = np.sqrt(alpha_t) * model_output + np.sqrt(beta_t) * sample
        elif self.config.prediction_type == "epsilon":
            eps = model_output
        else:
            eps = (sample - np.sqrt(alpha_t) * x0) / np.sqrt(beta_t)
        direction = np.sqrt(F32(1) - alpha_prev) * eps
        return np.sqrt(alpha_prev) * x0 + direction


SCHEDULERS: dict[str, type[Scheduler]] = {cls.name: cls for cls in (DDPMScheduler, DDIMScheduler)}


def make_scheduler(name: str, config: SchedulerConfig | dict[str, Any] | None = None) -> Scheduler:
    """A fresh scheduler by name ("ddpm", "ddim"); schedulers hold per-run state, so one per generation."""
    if not isinstance(name, str) or name.lower() not in SCHEDULERS:
        raise InputError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
    return SCHEDULERS[name.lower()](config)
