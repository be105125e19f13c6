"""The sampler interface the diffusion loop drives, in diffusers' shape.

    scheduler.set_timesteps(steps)                       # fresh run: grid and multistep state reset
    latents = initial_noise * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        model_input = scheduler.scale_model_input(latents, i)
        output = unet(model_input, t, ...)
        noise = noise_source.step(...) if scheduler.needs_noise(i) else None
        latents = scheduler.step(output, i, latents, noise)

Samplers never draw random numbers: a stochastic one says which steps need a standard-normal tensor
(`needs_noise`) and the loop hands it one from its NoiseSource, so any run can be replayed from its seed or from
recorded noise. A scheduler holds per-run state (multistep history): one instance per generation.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import InputError
from .config import F32, SchedulerConfig, alphas_cumprod, check_steps, default_scheduler_config, sigma_table
from .sigmas import interpolate


class Scheduler:
    """Base class: the config, the alpha table, and the default (identity) hooks."""

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}  # where this sampler's diffusers class has other defaults
    forced: ClassVar[dict[str, Any]] = {}  # what the sampler's name fixes (dpm++sde: the SDE algorithm)
    row_state: ClassVar[tuple[str, ...]] = ()  # per-run attributes that hold one entry per batch row

    def __init__(self, config: SchedulerConfig | dict[str, Any] | None = None, **options: Any):
        if config is None:
            config = default_scheduler_config()
        if isinstance(config, SchedulerConfig):
            config = {k: v for k, v in vars(config).items() if v is not None}
        self.config = SchedulerConfig.from_dict(config, self.defaults, options, self.forced)
        self.validate()
        self.alphas_cumprod = alphas_cumprod(self.config)
        self.timesteps = np.zeros(0, dtype=np.int64)
        self.init_noise_sigma = 1.0

    def validate(self) -> None:
        """Refuse config values this sampler does not implement (diffusers would do something we do not)."""
        self.config.require("prediction_type", ("epsilon", "v_prediction", "sample"))
        self.config.require("timestep_spacing", ("leading", "trailing", "linspace"))
        self.config.require("thresholding", (False,))

    def set_timesteps(self, steps: int) -> np.ndarray:
        check_steps(self.config, steps)
        self.timesteps = self._grid(steps)
        self.reset()
        return self.timesteps

    def _grid(self, steps: int) -> np.ndarray:
        raise NotImplementedError

    def reset(self) -> None:
        """Clear per-run state (multistep history)."""

    def select_rows(self, keep: np.ndarray) -> None:
        """Keep only the batch rows `keep` (indices) of the per-run state: the loop drops withdrawn rows
        between steps, and a multistep sampler's history must drop them with the latents."""
        for name in self.row_state:
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                setattr(self, name, value[keep])
            elif isinstance(value, list):
                setattr(self, name, [entry[keep] for entry in value])

    def sigma(self, index: int) -> float:
        """The noise level the sample has when step `index` begins, in the sigma parameterisation every sampler
        shares (sigma(t) = sqrt((1 - alpha_bar_t) / alpha_bar_t): 14.6 at t = 999, 0.029 at t = 0 for Tango):
        what a guidance interval is stated in. Alpha-based samplers read the table at their timestep; sigma-based
        ones override with their own grid."""
        return float(interpolate(self.timesteps[index], sigma_table(self.alphas_cumprod)))

    def scale_model_input(self, sample: np.ndarray, index: int) -> np.ndarray:
        """What the UNet sees at step `index` (sigma-based samplers divide by sqrt(sigma^2 + 1))."""
        return sample

    def add_noise(self, original: np.ndarray, noise: np.ndarray, index: int) -> np.ndarray:
        """`original` (clean latents) noised to the level the sample has when step `index` begins, in this sampler's
        parameterisation (diffusers' add_noise for the class; index == len(timesteps): the end of the run, clean).
        The one masked loop uses it to start from audio (img2img) and to re-noise known frames."""
        raise NotImplementedError

    def needs_noise(self, index: int) -> bool:
        """Whether step `index` takes a standard-normal tensor."""
        return False

    def noise_count(self) -> int:
        return sum(self.needs_noise(i) for i in range(len(self.timesteps)))

    def step(self, model_output: np.ndarray, index: int, sample: np.ndarray,
             noise: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def _noise(self, noise: np.ndarray | None, index: int) -> np.ndarray:
        if noise is None:
            raise InputError(f"{self.name} step {index} (t={self.timesteps[index]}) needs a noise tensor")
        return noise


def discrete_grid(config: SchedulerConfig, steps: int, dtype=np.int64, round_linspace: bool = True) -> np.ndarray:
    """`steps` timesteps, as DDPM / DDIM / Euler space them (diffusers' timestep_spacing)."""
    n = config.num_train_timesteps
    if config.timestep_spacing == "leading":
        ts = (np.arange(steps) * (n // steps)).round()[::-1].astype(dtype) + dtype(config.steps_offset)
    elif config.timestep_spacing == "trailing":
        ts = np.round(np.arange(n, 0, -n / steps)).astype(dtype) - dtype(1)
    elif round_linspace:
        ts = np.linspace(0, n - 1, steps).round()[::-1].astype(dtype)
    else:
        ts = np.linspace(0, n - 1, steps, dtype=F32)[::-1].astype(dtype)
    return ts.copy()


def solver_grid(config: SchedulerConfig, steps: int, last_timestep: int) -> np.ndarray:
    """`steps` timesteps, as the multistep solvers space them (steps + 1 points, the last dropped)."""
    if config.timestep_spacing == "linspace":
        ts = np.linspace(0, last_timestep - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
    elif config.timestep_spacing == "leading":
        ratio = last_timestep // (steps + 1)
        ts = (np.arange(steps + 1) * ratio).round()[::-1][:-1].astype(np.int64) + config.steps_offset
    else:
        ts = np.arange(last_timestep, 0, -config.num_train_timesteps / steps).round().astype(np.int64) - 1
    return ts.copy()


def first_step(steps: int, strength: float) -> int:
    """The step an edit of `strength` in (0, 1] starts at: diffusers' image-to-image rule (get_timesteps:
    init_timestep = min(int(steps * strength), steps), start = steps - init_timestep), for first-order samplers."""
    if not 0 < strength <= 1:
        raise InputError(f"strength must be in (0, 1], got {strength!r}")
    return max(steps - min(int(steps * strength), steps), 0)
