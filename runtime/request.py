"""One generation request: every option of a call as one typed, frozen value, built and checked once.

The Python API (runtime/tango.py), the CLI (tango_rt/cli.py) and both server front doors (serving/) build a
`GenerationRequest` and hand it to the one runner (runtime/runner.py). Each option is declared once, on its field
below, as an `Option` (runtime/options.py): kind, default, bounds, meaning. From that declaration come

- the checks, with one coercion rule (numpy scalars and arrays become Python values, then a strict type check);
- the CLI's flags for `generate` (tango_rt/cli.py: `add_request_flags`);
- the server's request fields and its OpenAPI document, with the server's caps as upper bounds
  (serving/schema.py);
- what a preset may set (runtime/presets.py) and the settings written into every audio file
  (runtime/metadata.py).

Adding one sampling option touches three places, nothing else:
1. here: a field declared with `option(...)` (a rule beyond type and bounds goes in its `rule=`, in the home of
   what it checks; a rule that relates two options goes in `GenerationRequest.__post_init__`), and its name and
   type in `RequestOptions` (what an editor shows for the drop-in methods' keywords; tests/test_api.py keeps the
   two equal);
2. where the loop needs it in another shape, a derived property here (as `plan` and `edit_strength` are);
3. the code that uses it (runtime/runner.py, runtime/pipeline.py or a sampler).
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypedDict

from .editing.geometry import MAX_SPANS, VARIATION_STRENGTH, check_spans
from .errors import InputError
from .guidance import CACHE_SCHEDULES, MAX_CACHE_INTERVAL, GuidanceInterval, UNetPlan, is_guided
from .loudness import DEFAULT_PEAK_DBFS
from .options import Option, is_default, plain
from .presets import PRESETS
from .schedulers import DEFAULT_SCHEDULER, SCHEDULER_NAMES
from .schedulers.config import MAX_SIGMA, SCHEDULER_OPTIONS

MAX_SECONDS = 3600.0  # the longest clip, extension or span end anyone may ask for (an hour)
MIN_SECONDS = 0.01  # the shortest clip or extension: 160 samples (a clip of no samples is no clip)
MAX_SEED = 2**63 - 1
# A fresh seed stays below 2**53, so that it survives any JSON client (JavaScript's numbers are exact up to 2**53:
# the playground's "reuse seed" would otherwise reuse a neighbour); a given seed may use all 63 bits.
FRESH_SEED_BITS = 53
MAX_GUIDANCE = 100.0  # far above any useful scale (Tango's is 3)
MAX_STEPS = 1000  # the training schedule's length: no sampler takes more


def option(kind: str, default: Any = None, help: str = "", **rules: Any) -> Any:
    """A request field declared as an Option (see runtime/options.py)."""
    return field(default=default, metadata={"option": Option(kind, default, help, **rules)})


def _interval(value: tuple[float, float]) -> tuple[float, float]:
    interval = GuidanceInterval.of(value)
    return interval.low, interval.high


def _spans(value: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
    return tuple(check_spans(value, math.inf))


def _scheduler_options(value: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The sampler options' own rule, then a frozen form (sorted pairs), so that requests compare and hash (the
    server's batch key)."""
    return tuple(sorted(SCHEDULER_OPTIONS.rule(value).items()))


@dataclass(frozen=True)
class GenerationRequest:
    """What to make: prompts, the sampling, the UNet plan, the clip, edits, randomness. Build it with `build` (or
    `from_fields` for the server's JSON); derived values (`plan`, `guided`, `edit_strength`, ...) come from here.

    Inputs that are arrays or files (`audio`, `latents`, `noise`) are carried as given and not compared: the runner
    loads and checks them against the model."""

    prompts: tuple[str, ...]
    steps: int = option("int", 100, "denoising steps", low=1, high=MAX_STEPS, cap="max_steps")
    guidance: float = option("number", 3.0, "classifier-free guidance scale (1 or less: no guidance)", low=0,
                             high=MAX_GUIDANCE)
    samples: int = option("int", 1, "clips per prompt", low=1, cap="max_samples")
    scheduler: str = option("choice", DEFAULT_SCHEDULER, "sampler (ddpm is the original's)",
                            choices=SCHEDULER_NAMES)
    scheduler_options: tuple[tuple[str, Any], ...] | None = field(
        default=None, metadata={"option": dataclasses.replace(SCHEDULER_OPTIONS, rule=_scheduler_options)})
    duration: float | None = option("number", None, "clip length in seconds (default 10.24)", low=MIN_SECONDS,
                                    high=MAX_SECONDS, cap="max_duration_s")
    seed: int | None = option("int", None, "random seed (omitted: a fresh one)", low=0, high=MAX_SEED,
                              per_clip=True)
    strength: float | None = option("number", None, "with audio: share of the schedule re-run (default 0.5)",
                                    low=0, open_low=True, high=1)
    inpaint: tuple[tuple[float, float], ...] | None = option(
        "spans", None, "with audio: [start, end] seconds to regenerate", low=0, high=MAX_SECONDS, items=MAX_SPANS,
        rule=_spans, flag="--inpaint", metavar="START:END")
    extend: float | None = option("number", None, "with audio: seconds to add after it", low=MIN_SECONDS,
                                  high=MAX_SECONDS, cap="max_duration_s", metavar="SECONDS")
    loop: bool = option("bool", False, "a seamless loop of `duration` seconds")
    guidance_interval: tuple[float, float] | None = option(
        "pair", None, "guide only steps whose noise level sigma is in (low, high]; default every step", low=0,
        high=MAX_SIGMA, rule=_interval, metavar="LOW:HIGH")
    cache_interval: int = option("int", 1, "the full UNet every N-th step, its shallow branch between", low=1,
                                 high=MAX_CACHE_INTERVAL, metavar="N")
    cache_schedule: str = option("choice", "uniform", "where the full calls go: every N-th step, or denser "
                                 "mid-schedule", choices=CACHE_SCHEDULES)
    preset: str | None = option("choice", None, "named settings (runtime/presets.py); explicit options win",
                                choices=tuple(PRESETS), per_clip=True)
    loudness: float | None = option("number", None, "bring each clip to this integrated loudness, LUFS (ITU-R "
                                    "BS.1770, e.g. -23 for EBU R128); default: the model's own level", low=-70,
                                    high=0, per_clip=True, metavar="LUFS")
    peak: float = option("number", DEFAULT_PEAK_DBFS, "with loudness: the sample-peak ceiling, dBFS", low=-60,
                         high=0, per_clip=True, metavar="DBFS")
    # inputs that are arrays or files: carried as given, checked by the runner against the model
    audio: Any = field(default=None, compare=False, repr=False)
    sample_rate: int | None = field(default=None, compare=False)
    latents: Any = field(default=None, compare=False, repr=False)
    noise: Any = field(default=None, compare=False, repr=False)

    # ---- building ---------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, prompts: Sequence[str], *, explicit: Sequence[str] | None = None, **values: Any
              ) -> GenerationRequest:
        """A checked request. `values` are options by name (None: the default) and the inputs (audio,
        sample_rate, latents, noise). With a `preset`, its settings fill every option not named in `explicit`
        (default: every option given a value that is neither None nor a signature's default, options.default)."""
        unknown = sorted(set(values) - set(OPTIONS) - set(INPUTS))
        if unknown:
            raise InputError(f"unknown option(s) {unknown}; known: {sorted(OPTIONS)}")
        given = {k for k, v in values.items() if v is not None and not is_default(v)} if explicit is None \
            else set(explicit)
        preset = OPTIONS["preset"].check("preset", values.get("preset"))
        if preset is not None:
            values = {**values, **{k: v for k, v in PRESETS[preset].items() if k not in given}}
        checked = {name: OPTIONS[name].check(name, values[name]) for name in OPTIONS if values.get(name) is not None}
        inputs = {name: values[name] for name in INPUTS if values.get(name) is not None}
        return cls(check_prompts(prompts), **checked, **inputs)

    @classmethod
    def from_fields(cls, fields_: Mapping[str, Any], prompt_key: str = "prompt") -> GenerationRequest:
        """A request from one clip's fields as the server receives them ({"prompt": ..., "steps": ...})."""
        values = dict(fields_)
        prompt = values.pop(prompt_key, None)
        if not isinstance(prompt, str):
            raise InputError(f"{prompt_key} must be a string, got {prompt!r:.80}")
        return cls.build([prompt], **values)

    def __post_init__(self) -> None:
        """The rules that relate options to each other (each option's own checks ran in `build`)."""
        audio = self.audio is not None
        if not audio:
            needs = [name for name in ("strength", "inpaint", "extend") if getattr(self, name) is not None]
            if needs:
                raise InputError(f"{', '.join(needs)} need(s) input audio (audio=...)")
        elif self.loop:
            raise InputError("loop makes a new clip from the prompt; it takes no input audio (use inpaint= to edit "
                             "a clip)")
        elif self.duration is not None:
            raise InputError("duration is the input's own length when audio is given; use extend= to make it longer")
        elif self.extend is not None and (self.strength is not None or self.inpaint is not None):
            raise InputError("extend continues the input as it is: it takes no strength or inpaint")
        if (audio or self.loop) and (self.latents is not None or self.noise is not None):
            raise InputError("latents= / noise= replay plain generations only; edits, loops and long-form clips "
                             "are reproduced from their seed")

    def replace(self, **changes: Any) -> GenerationRequest:
        """A copy with some options changed, checked as `build` checks them."""
        values = {**self.values(), **{k: getattr(self, k) for k in INPUTS}, **changes}
        prompts = values.pop("prompts", self.prompts)
        return GenerationRequest.build(prompts, explicit=list(OPTIONS), **values)

    def seeded(self) -> GenerationRequest:
        """The request with a seed: a fresh one when none was given, so that what it makes can be made again."""
        return self if self.seed is not None else dataclasses.replace(self, seed=secrets.randbits(FRESH_SEED_BITS))

    # ---- derived values ---------------------------------------------------------------------------------------
    @property
    def guided(self) -> bool:
        return is_guided(self.guidance)

    @cached_property
    def plan(self) -> UNetPlan:
        return UNetPlan(GuidanceInterval.of(self.guidance_interval), self.cache_interval, self.cache_schedule)

    @property
    def sampler_options(self) -> dict[str, Any]:
        return dict(self.scheduler_options or ())

    @property
    def edit_strength(self) -> float:
        """The share of the schedule an edit re-runs: as given, else 1 for inpainting and extension (only the
        spans or the new audio are generated) and VARIATION_STRENGTH for a variation."""
        if self.strength is not None:
            return self.strength
        return 1.0 if self.inpaint is not None or self.extend is not None else VARIATION_STRENGTH

    @property
    def rows(self) -> list[str]:
        """One prompt per clip, prompt-major: p0 x samples, p1 x samples, ..."""
        return [prompt for prompt in self.prompts for _ in range(self.samples)]

    def values(self) -> dict[str, Any]:
        """Every option's value by name (no inputs), as `build` takes it back: what a file's settings record."""
        values = {name: getattr(self, name) for name in OPTIONS}
        values["scheduler_options"] = self.sampler_options if self.scheduler_options is not None else None
        return values

    def shared(self) -> GenerationRequest:
        """What clips must share to run in one denoising call: this request without its per-clip options and
        prompts (the server's batch key; inputs are not compared)."""
        reset = {name: OPTIONS[name].default for name in OPTIONS if OPTIONS[name].per_clip}
        return dataclasses.replace(self, prompts=(), samples=1, **reset)


OPTIONS: dict[str, Option] = {f.name: f.metadata["option"] for f in fields(GenerationRequest) if "option" in f.metadata}
INPUTS = ("audio", "sample_rate", "latents", "noise")

if TYPE_CHECKING:
    import numpy as np

    from .audio_input import AudioLike


class RequestOptions(TypedDict, total=False):
    """The keyword options of the drop-in methods (runtime/tango.py: `**options: Unpack[RequestOptions]`), as
    GenerationRequest declares them: what an editor completes and a type checker checks."""

    scheduler: str
    scheduler_options: Mapping[str, Any] | None
    duration: float | None
    seed: int | None
    strength: float | None
    inpaint: Sequence[Sequence[float]] | None
    extend: float | None
    loop: bool
    guidance_interval: Sequence[float] | None
    cache_interval: int
    cache_schedule: str
    preset: str | None
    loudness: float | None
    peak: float
    audio: AudioLike | None
    sample_rate: int | None
    latents: np.ndarray | None
    noise: Sequence[np.ndarray] | None


def check_prompts(prompts: Any) -> tuple[str, ...]:
    """A non-empty list of strings (the original's `generate_for_batch` takes a list)."""
    prompts = plain(prompts)
    if isinstance(prompts, str) or not isinstance(prompts, list):
        raise InputError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    if not prompts:
        raise InputError("prompts is empty: give at least one prompt")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InputError(f"prompt {i} is a {type(prompt).__name__} ({prompt!r}), expected a string")
    return tuple(prompts)


def check_value(name: str, value: Any, kind: str = "int", **rules: Any) -> Any:
    """An argument outside the request (batch_size, a seed for encode_audio) under the same rule as the options."""
    return Option(kind, **rules).check(name, value)
