"""The UNet's inputs along real sampling trajectories: what the W8A8 UNet is calibrated on and judged with.

Post-training quantization fixes each activation's INT8 range from data, so the data must be what the UNet sees
when it generates: the latents of every noise level a sampler visits, the timestep as it enters, the T5
embeddings of real prompts with their padding, guided (the CFG batch: "" first) and unguided rows. Random
tensors would set ranges that real inputs overflow or waste (T5's embeddings are nothing like N(0, 1)). So the
prompts are run through the exported FP32 graphs, on the presets users run (fast: 15 guided UniPC steps; turbo:
guidance only mid-schedule and the shallow branch between full calls), and every UNet call's inputs are kept.
The run is seeded (prompt i gets seed + i), so the same prompts and seed give the same calibration set.
The decoders, when they are quantized too, are calibrated on what those runs end in: each run's final latents
(the VAE decoder's input) and the mel the FP32 VAE decoder makes of them (the vocoder's).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..runtime.errors import InputError
from ..runtime.precision import W8A8_DECODERS, W8A8_NETWORKS
from ..runtime.prompt_files import read_rows
from ..runtime.specs import UNET
from .precision import SMOOTH_QUANT_ALPHA

if TYPE_CHECKING:  # the sampling machinery loads when calibration runs, not when the CLI reads the defaults here
    from ..runtime.pipeline import TangoPipeline

CALIBRATION_PRESETS = ("fast", "turbo")  # prompt i runs preset i % 2: full guided trajectories and turbo's mix
CALIBRATION_SEED = 0
CALIBRATION_CALLS = 32  # UNet calls NNCF's statistics are taken over, spread evenly over everything recorded


def default_prompts_file() -> Path:
    """The prompts shipped with the package (export/calibration_prompts.txt)."""
    return Path(str(resources.files("tango_rt.export").joinpath("calibration_prompts.txt")))


def read_prompts(path: str | Path | None = None) -> list[str]:
    """Calibration prompts from a prompt file (text, CSV or JSON Lines, as `generate --prompts` reads); an
    unreadable or empty file, or one with a bad row, is an InputError naming it."""
    path = default_prompts_file() if path is None else Path(path)
    rows, problems = read_rows(path, option="--calibration-prompts")
    if problems:
        line, problem = problems[0]
        raise InputError(f"--calibration-prompts {path}: line {line}: {problem}")
    return [row.prompt for row in rows]


@dataclass(frozen=True)
class Call:
    """One recorded network call: its feeds (copies), and the run (prompt index) and preset it came from."""

    network: str  # unet or unet_shallow, or a decoder
    feeds: dict[str, np.ndarray]
    run: int
    preset: str

    @property
    def guided(self) -> bool:
        """Runs are one prompt, one sample: a guided call is the CFG batch of two rows."""
        return len(self.feeds["sample"]) == 2

    @property
    def timestep(self) -> float:
        return float(self.feeds["timestep"][0])

    @property
    def label(self) -> str:
        """The input's shape, and for a UNet call its timestep and whether it is the guided batch."""
        shape = "x".join(str(s) for s in next(iter(self.feeds.values())).shape)
        if "timestep" not in self.feeds:
            return shape
        return f"{shape} t={self.timestep:.0f} {'guided' if self.guided else 'cond'}"


class _Recording:
    """Stands in for a network in the pipeline: keeps a copy of each call's feeds, then runs it."""

    def __init__(self, network: str, component: Any, calls: list[Call], context: dict[str, Any]):
        self._network, self._component, self._calls, self._context = network, component, calls, context

    def __call__(self, outputs: Sequence[str] | None = None, **feeds: np.ndarray) -> Any:
        copies = {name: np.array(value) for name, value in feeds.items()}
        self._calls.append(Call(self._network, copies, self._context["run"], self._context["preset"]))
        return self._component(outputs=outputs, **feeds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._component, name)


def record_calls(pipeline: TangoPipeline, prompts: Sequence[str], seed: int = CALIBRATION_SEED,
                 presets: Sequence[str] = CALIBRATION_PRESETS, decode: bool = False) -> list[Call]:
    """Every UNet and shallow-UNet call of sampling `prompts` (one at a time, prompt i with seed + i and preset
    i % len(presets)); with `decode`, each run's latents are decoded and the decoders' calls recorded too
    (otherwise they are not run). The pipeline's networks are restored afterwards."""
    from ..runtime.noise import NoiseSource, row_generators
    from ..runtime.request import GenerationRequest
    from ..runtime.runner import Runner

    if not prompts:
        raise InputError("calibration needs at least one prompt")
    calls: list[Call] = []
    context: dict[str, Any] = {}
    runner = Runner(pipeline)
    recorded = W8A8_NETWORKS + (W8A8_DECODERS if decode else ())
    originals = {name: pipeline.component(name) for name in recorded}  # the shallow one loads now
    for name, component in originals.items():
        pipeline.components[name] = _Recording(name, component, calls, context)
    try:
        for index, prompt in enumerate(prompts):
            preset = presets[index % len(presets)]
            context.update(preset=preset, run=index)
            request = GenerationRequest.build([prompt], preset=preset, seed=seed + index)
            sampling = runner.sampling(request)
            text = pipeline.encode_text([prompt], 1, sampling.guided)
            latents = pipeline.sample(text, sampling, NoiseSource(row_generators(request.seed, 1)))
            if decode:
                pipeline.decode(latents)
    finally:
        pipeline.components.update(originals)
    return calls


def spread(calls: Sequence[Call], network: str, count: int) -> list[Call]:
    """`count` of the network's calls, evenly spaced over the recording (every prompt, early and late steps)."""
    own = [call for call in calls if call.network == network]
    if len(own) <= count:
        return own
    return [own[int(i)] for i in np.linspace(0, len(own) - 1, count).round()]


@dataclass(frozen=True)
class Calibration:
    """What a W8A8 export is calibrated on: a prompt file (None: the shipped one), the seed of its trajectories,
    how many UNet calls NNCF takes statistics over, SmoothQuant's alpha, and whether the decoders are quantized
    too (on every run's end: one call each per prompt)."""

    prompts_file: str | None = None
    seed: int = CALIBRATION_SEED
    calls: int = CALIBRATION_CALLS
    alpha: float = SMOOTH_QUANT_ALPHA
    decoders: bool = False
    prompts: tuple[str, ...] = field(default=(), compare=False)

    @property
    def networks(self) -> tuple[str, ...]:
        """The networks quantized: the UNet and its shallow branch, and the decoders when asked."""
        return W8A8_NETWORKS + (W8A8_DECODERS if self.decoders else ())

    def checked(self) -> Calibration:
        """With its prompts read, before any export work: a bad file or count fails at once."""
        if not 1 <= self.calls <= 4096:
            raise InputError(f"--calibration-calls must be 1 to 4096, got {self.calls}")
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"SmoothQuant alpha must be in [0, 1], got {self.alpha}")
        return replace(self, prompts=tuple(read_prompts(self.prompts_file)))

    def feeds(self, pipeline: TangoPipeline) -> dict[str, list[dict[str, np.ndarray]]]:
        """Per network quantized from a full graph (the shallow branch is cut out of the UNet's): the full UNet's
        inputs at `calls` calls spread over the prompts' trajectories, and every decoder call."""
        calls = record_calls(pipeline, self.prompts, self.seed, decode=self.decoders)
        feeds = {UNET: [call.feeds for call in spread(calls, UNET, self.calls)]}
        for name in self.networks:
            if name not in W8A8_NETWORKS:  # the decoders: every call, one per prompt
                feeds[name] = [call.feeds for call in calls if call.network == name]
        return feeds

    def record(self, calls: int) -> dict[str, Any]:
        """What the manifest keeps: enough to say what the ranges were fixed on, and to redo it."""
        digest = hashlib.sha256("\n".join(self.prompts).encode()).hexdigest()[:16]
        return {"prompts_file": self.prompts_file or "(shipped)", "prompts": len(self.prompts),
                "prompts_sha256": digest, "seed": self.seed, "calls": calls, "presets": list(CALIBRATION_PRESETS),
                "smooth_quant_alpha": self.alpha, "networks": list(self.networks)}
