"""Numpy samplers that reproduce diffusers' schedulers, and their user-facing names.

Each name means what the diffusers class does when built with `from_config(<the checkpoint's scheduler
config>)` and the class's own defaults; options (diffusers config keys: use_karras_sigmas, final_sigmas_type,
solver_order, timestep_spacing, ...) change that only when passed. The checkpoint's SD-2.1 config gives no
timestep_spacing, so DDPM / DDIM space timesteps "leading" (as the original Tango) and the others "linspace",
diffusers' defaults for those classes.

| name     | diffusers class                                   | noise per step |
|----------|---------------------------------------------------|----------------|
| ddpm     | DDPMScheduler (the original Tango's sampler)      | every t > 0    |
| ddim     | DDIMScheduler, eta 0                              | none           |
| dpm++    | DPMSolverMultistepScheduler (2M)                  | none           |
| dpm++sde | DPMSolverMultistepScheduler, sde-dpmsolver++      | every step     |
| unipc    | UniPCMultistepScheduler (bh2)                     | none           |
| euler    | EulerDiscreteScheduler                            | none           |
| euler-a  | EulerAncestralDiscreteScheduler                   | every step     |
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .base import Scheduler
from .config import SchedulerConfig, default_scheduler_config
from .ddpm import DDIMScheduler, DDPMScheduler
from .dpm_solver import DPMSolverMultistepScheduler, DPMSolverSDEScheduler
from .euler import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler
from .unipc import UniPCMultistepScheduler

SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.name: cls
    for cls in (DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler, DPMSolverSDEScheduler,
                UniPCMultistepScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler)
}
SCHEDULER_NAMES = tuple(SCHEDULERS)
DEFAULT_SCHEDULER = "ddpm"  # the original's sampler


def make_scheduler(name: str, config: SchedulerConfig | dict[str, Any] | None = None, **options: Any) -> Scheduler:
    """A fresh scheduler by name; schedulers hold per-run state, so one per generation."""
    if not isinstance(name, str) or name.strip().lower() not in SCHEDULERS:
        raise InputError(f"unknown scheduler {name!r}; choose one of {list(SCHEDULERS)}")
    return SCHEDULERS[name.strip().lower()](config, **options)


__all__ = ["DEFAULT_SCHEDULER", "SCHEDULERS", "SCHEDULER_NAMES", "Scheduler", "SchedulerConfig",
           "default_scheduler_config", "make_scheduler"]
