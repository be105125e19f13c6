"""Faults the serving tests inject, asked for by the prompt, in one place for every way in: monkeypatched into this
process (tests/test_serving_app.py), run as a real server's prelude (`PRELUDE`), or as the sitecustomize of a Ray
instance's processes. "poison" makes its own rows' text embeddings NaN; "unet-fault-N" makes the N-th UNet call of
its batch raise a plain RuntimeError (what an ONNX Runtime, OpenVINO or CUDA error looks like to the loop).
Imports only numpy and the pipeline, so every Python process of a Ray instance can run it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

PRELUDE = f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nimport faults\nfaults.install()\n"


def poisoned(real_encode: Callable, on_encode: Callable[[list], None] = lambda prompts: None) -> Callable:
    """`TangoPipeline.encode_text` whose "poison" prompts get NaN embeddings (their conditional rows)."""

    def encode(self, prompts, samples, guided):
        on_encode(list(prompts))
        text = real_encode(self, prompts, samples, guided)
        cond = len(text.embeddings) // 2 if guided else 0
        for i, prompt in enumerate(prompts):
            if prompt == "poison":
                text.embeddings[cond + i * samples : cond + (i + 1) * samples] = np.nan
        return text

    return encode


def install() -> None:
    """Both faults into TangoPipeline, for every pipeline this process makes."""
    from tango_rt.runtime.pipeline import TangoPipeline

    state: dict = {"prompts": [], "calls": 0}
    real_output = TangoPipeline._model_output

    def remember(prompts: list) -> None:
        state["prompts"], state["calls"] = prompts, 0

    def output(self, *args, **kwargs):
        state["calls"] += 1
        for prompt in state["prompts"]:
            if prompt.startswith("unet-fault-") and state["calls"] == int(prompt.rsplit("-", 1)[1]):
                raise RuntimeError(f"injected: UNet call {state['calls']} failed")
        return real_output(self, *args, **kwargs)

    TangoPipeline.encode_text = poisoned(TangoPipeline.encode_text, remember)
    TangoPipeline._model_output = output
