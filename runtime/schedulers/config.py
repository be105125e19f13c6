"""Scheduler configuration and the noise-schedule tables every sampler shares, in torch's float32 numerics.

`alphas_cumprod` is rebuilt the way torch computes it (linspace filled from both ends with a fused multiply-add,
cumprod accumulated in float64), so schedules match diffusers bit for bit on CPU; scalar coefficients are float32
and combined in diffusers' operation order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any

import numpy as np

from ..errors import InputError
from ..options import Option

F32 = np.float32
SPACINGS = ("leading", "trailing", "linspace")
MAX_SIGMA = 1e4  # far above Tango's largest training sigma (~14.6); bounds a user's sigma_min / sigma_max


# The per-call options a user may pass (API scheduler_options, CLI --scheduler-option, the server's field), each
# declared with its type and bounds (runtime/options.py: the same check everywhere, and the server's schema).
# Everything else in SchedulerConfig describes how the model was trained (betas, prediction type, train timesteps)
# and comes from the checkpoint only: changing it per call silently changes the noise schedule, and
# num_train_timesteps sizes arrays.
USER_OPTIONS: dict[str, Option] = {
    "use_karras_sigmas": Option("bool", help="Karras et al.'s sigma spacing (the fast preset's)"),
    "final_sigmas_type": Option("choice", choices=("zero", "sigma_min")),
    "timestep_spacing": Option("choice", choices=SPACINGS),
    "solver_order": Option("choice", choices=(1, 2)),
    "solver_type": Option("choice", choices=("midpoint", "heun", "bh1", "bh2")),
    "lower_order_final": Option("bool"),
    "euler_at_final": Option("bool"),
    "disable_corrector": Option("indices", low=0, high=1000, items=1000, help="UniPC steps without corrector"),
    "sigma_min": Option("number", low=0, open_low=True, high=MAX_SIGMA),
    "sigma_max": Option("number", low=0, open_low=True, high=MAX_SIGMA),
}


def _sigma_order(options: dict[str, Any]) -> dict[str, Any]:
    if options.get("sigma_min", 0) >= options.get("sigma_max", math.inf):
        raise InputError(f"scheduler_options: sigma_min ({options['sigma_min']:g}) must be below sigma_max "
                         f"({options['sigma_max']:g})")
    return options


SCHEDULER_OPTIONS = Option("mapping", fields=USER_OPTIONS, rule=_sigma_order,
                           help="diffusers scheduler options for this call", flag="--scheduler-option",
                           metavar="KEY=VALUE")


def option_pairs(pairs: list[str]) -> dict[str, Any]:
    """--scheduler-option KEY=VALUE pairs (generate, bench), VALUE parsed as JSON when it is JSON (true, 3, [0, 1]),
    else kept as a string; check_user_options then decides what is allowed."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--scheduler-option takes KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def check_user_options(options: Any) -> dict[str, Any]:
    """The user's sampler options, allow-listed and type-checked; an InputError names the key and the rule."""
    return SCHEDULER_OPTIONS.check("scheduler_options", options) or {}


@dataclass(frozen=True)
class SchedulerConfig:
    """The keys of diffusers' scheduler configs that inference reads. Defaults are diffusers' DDPM/DDIM ones;
    each sampler class overrides the few defaults its diffusers class has differently (`Scheduler.defaults`)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    trained_betas: tuple[float, ...] | None = None
    prediction_type: str = "epsilon"
    steps_offset: int = 0
    timestep_spacing: str = "leading"
    # DDPM / DDIM
    set_alpha_to_one: bool = True
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    variance_type: str = "fixed_small"
    thresholding: bool = False
    # multistep solvers and sigma-based samplers
    solver_order: int = 2
    algorithm_type: str = "dpmsolver++"
    solver_type: str = "midpoint"
    lower_order_final: bool = True
    euler_at_final: bool = False
    use_karras_sigmas: bool = False
    final_sigmas_type: str = "zero"
    lambda_min_clipped: float = -math.inf
    disable_corrector: tuple[int, ...] = ()
    sigma_min: float | None = None
    sigma_max: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], defaults: dict[str, Any] | None = None,
                  options: dict[str, Any] | None = None, forced: dict[str, Any] | None = None) -> SchedulerConfig:
        """Dataclass defaults, then `defaults` (the sampler class's), then the known keys of `data` (a checkpoint's
        config: unknown keys are ignored, as diffusers' from_config does), then `options` (the user's: only
        USER_OPTIONS, type-checked), then `forced` (what the sampler's name fixes)."""
        known = {f.name for f in fields(cls)}
        values = {**(defaults or {}), **{k: v for k, v in data.items() if k in known and v is not None},
                  **check_user_options(options or {}), **(forced or {})}
        for key in ("trained_betas", "disable_corrector"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        try:
            return cls(**values)
        except TypeError as exc:
            raise InputError(f"bad scheduler config: {exc}") from None

    def require(self, key: str, allowed: tuple) -> None:
        """Refuse a value this sampler does not implement, naming the key and what is supported."""
        value = getattr(self, key)
        if value not in allowed:
            raise InputError(f"scheduler config: {key}={value!r} is not supported (supported: {list(allowed)})")


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
    elif config.beta_schedule == "scaled_linear":
        root = _torch_linspace(config.beta_start**0.5, config.beta_end**0.5, n)
        betas = root * root
    else:
        raise InputError(f"scheduler config: beta_schedule={config.beta_schedule!r} is not supported "
                         "(supported: ['linear', 'scaled_linear'] or trained_betas)")
    alphas = F32(1) - betas
    return np.cumprod(alphas.astype(np.float64)).astype(F32)


def sigma_table(alphas: np.ndarray) -> np.ndarray:
    """sigma(t) = sqrt((1 - alpha_bar) / alpha_bar) for every training timestep, float32."""
    return np.sqrt((F32(1) - alphas) / alphas)


def check_steps(config: SchedulerConfig, steps: int) -> None:
    if not 1 <= steps <= config.num_train_timesteps:
        raise InputError(f"steps must be between 1 and {config.num_train_timesteps}, got {steps}")
