"""Shared fixtures: the tango-tiny checkpoint with golden outputs of the original Tango implementation.

The golden arrays were produced by declare-lab/tango's own code (CPU, float32, 2 threads); see
tests/fixtures/tango-tiny/README.md. They are the independent truth every parity test compares against.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
from pathlib import Path

# Under pytest-xdist (`pytest -n 2`), each worker is pinned to its share of the CPUs before numpy, torch or a
# backend sizes a thread pool, so two workers never run four compute threads on two cores.
if (worker := os.environ.get("PYTEST_XDIST_WORKER")) and hasattr(os, "sched_setaffinity"):
    cpus, workers = sorted(os.sched_getaffinity(0)), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= len(cpus):
        os.sched_setaffinity(0, cpus[int(worker.removeprefix("gw")) :: workers])

import numpy as np
import pytest
from filelock import FileLock

os.environ.setdefault("TANGO_RT_DEBUG", "1")  # test mode: NaN/Inf checks at every component boundary
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

FIXTURE = Path(__file__).parent / "fixtures" / "tango-tiny"
WAV = FIXTURE.parent / "audio-in" / "tone_16k.wav"  # the audio-in fixture: 1.3 s, 20800 16-bit samples at 16 kHz
STUDIES = Path(__file__).resolve().parents[1] / "studies"


def study(name: str):
    """studies/<name>/<name>.py as a module (the studies are scripts, not installed)."""
    spec = importlib.util.spec_from_file_location(f"study_{name}", STUDIES / name / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Tolerances, stated once, from an error model that holds on any CPU (not from one machine's worst case).
# The golden arrays and our runs compute the same float32 arithmetic in different orders: GEMM / convolution
# blocking, SIMD width (AVX2, AVX-512, AMX, NEON), thread split, libm. Unit roundoff u = 2^-24. A length-K dot
# product summed in another order moves by about sqrt(K) * u relative to its magnitude (independent rounding
# errors; Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., section 3.1 and the probabilistic
# bounds of Higham & Mary 2019); normalisations keep each layer's gain near 1, so `depth` layers on the path add
# up. MARGIN covers the max over ~1e6 elements and the locally ill-conditioned ops (softmax, tanh-GELU).
U = 2.0**-24
MARGIN = 4


def layer_tolerance(reduction: int, depth: int, scale: float = 1.0) -> dict[str, float]:
    """assert_allclose tolerance for a network whose longest reduction is `reduction` and whose deepest path
    has `depth` reducing layers; `scale` is the typical magnitude of its output (for atol)."""
    relative = MARGIN * math.sqrt(reduction) * U * depth
    return {"rtol": relative, "atol": relative * scale}


# T5 tiny: d_ff 64, 2 layers x (q, k, v, o, two gated inputs, wo, norm) = 16 reducing ops.
TOL_EMBEDDINGS = layer_tolerance(64, 16)
# UNet tiny: 3x3 convolutions over up to 64 channels (K = 576), ~30 reducing layers on the deepest path.
TOL_UNET = layer_tolerance(576, 30)
# Final latents after 10 guided steps: guidance 3 turns an output error e into at most (1 + 2 * 3) e; DDIM / DDPM
# steps weight the model output by at most 1 and contract the sample, so errors add over steps, and being
# independent they add like sqrt(steps).
TOL_LATENTS = {k: v * 7 * math.sqrt(10) for k, v in TOL_UNET.items()}
# VAE decoder: 3x3 convolutions over up to 64 channels (K = 576), ~20 layers; mel values are O(1) to O(10).
TOL_MEL = layer_tolerance(576, 20)
# HiFi-GAN: transposed convolutions of kernel 16 over 64 channels (K = 1024), ~35 layers.
TOL_WAVE = layer_tolerance(1024, 35)
# VAE encoder: 3x3 convolutions over up to 64 channels (K = 576); conv_in, 3 levels x 2 resnets x 2 convolutions,
# 2 downsamplings, the mid block (4 convolutions and attention), conv_out, quant_conv: ~24 layers.
TOL_VAE_ENCODER = layer_tolerance(576, 24)
# A network's bound by name (the shallow branch: a subset of the UNet).
TOL_NETWORK = {"text_encoder": TOL_EMBEDDINGS, "unet": TOL_UNET, "vae_decoder": TOL_MEL, "vocoder": TOL_WAVE,
               "vae_encoder": TOL_VAE_ENCODER, "unet_shallow": TOL_UNET}
# Call shapes unlike the export's sample inputs (batch 1, text_len 7, 264 latent frames): a graph with a shape
# baked in by tracing fails here. Edges of the declared ranges included (runtime/specs.dims's free dimensions).
SHAPES = [
    dict(batch=1, text_len=1, latent_frames=8, guided=False),
    dict(batch=3, text_len=40, latent_frames=64),
    dict(batch=8, text_len=3, latent_frames=32),
]
# int16 = trunc(wave * 32768): a float difference d moves it by at most ceil(d * 32768) + 1 LSB.
INT16_LSB = math.ceil(TOL_WAVE["atol"] * 32768) + 1


def outputs(result) -> np.ndarray:
    """A component's result as one array: a multi-output network's outputs (the VAE encoder's mean and
    log-variance, the UNet's noise prediction and deep feature) flattened and joined."""
    return np.concatenate([r.ravel() for r in result]) if isinstance(result, tuple) else result


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "golden.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def golden_meta() -> dict:
    return json.loads((FIXTURE / "golden.json").read_text())


@pytest.fixture(scope="session")
def tiny_tango():
    """One torch (CPU, float32) Tango on the fixture for the whole session: loading costs seconds."""
    pytest.importorskip("torch")
    from tango_rt import Tango

    return Tango(str(FIXTURE), device="cpu")


@pytest.fixture
def fixture_copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture checkpoint, for tests that break it."""
    target = tmp_path / "tango-tiny"
    shutil.copytree(FIXTURE, target, ignore=shutil.ignore_patterns("golden.*", "pytorch_model_stft.bin"))
    for path in target.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    return target


def made_once(tmp_path_factory, name: str, make) -> Path:
    """A folder made once per test run and shared by the xdist workers (a lock file beside it: pytest-xdist's
    recipe for session fixtures), since a tiny export costs tens of seconds and both workers read the same bytes.
    Tests read it; one that edits an export copies it first."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    target = root / name
    with FileLock(f"{target}.lock"):
        if not (target / "manifest.json").exists():  # written last: a folder without it is a run cut off
            make(target)
    return target


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory) -> Path:
    """The fixture exported to ONNX (fp32) once per run."""
    pytest.importorskip("onnx")
    from tango_rt.export.onnx_export import export_onnx

    return made_once(tmp_path_factory, "tiny-onnx", lambda target: export_onnx(str(FIXTURE), target, force=True))


@pytest.fixture(scope="session")
def onnx_fp16_dir(tmp_path_factory) -> Path:
    """The fixture exported with the FP16 precision policy, once per run."""
    pytest.importorskip("onnx")
    from tango_rt.export.onnx_export import export_onnx

    return made_once(tmp_path_factory, "tiny-onnx-fp16",
                     lambda target: export_onnx(str(FIXTURE), target, precision="fp16", force=True))
