"""Shared fixtures: the tango-tiny checkpoint with golden outputs of the original Tango implementation.

The golden arrays were produced by declare-lab/tango's own code (CPU, float32, 2 threads); see
tests/fixtures/tango-tiny/README.md. They are the independent truth every parity test compares against.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TANGO_RT_DEBUG", "1")  # test mode: NaN/Inf checks at every component boundary
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

FIXTURE = Path(__file__).parent / "fixtures" / "tango-tiny"

# Tolerances, stated once. The golden run used 2 threads; other thread counts move float32 results by ~1e-6
# per network call and ~1e-5 after 10 steps (fixture README), so these leave a 10x margin, no more.
TOL_EMBEDDINGS = {"rtol": 1e-5, "atol": 1e-5}
TOL_UNET = {"rtol": 1e-5, "atol": 2e-5}
TOL_LATENTS = {"rtol": 1e-4, "atol": 1e-4}
TOL_MEL = {"rtol": 1e-4, "atol": 1e-4}  # diffusers' AutoencoderKL: ~3e-5 from the original (SDPA, linear layers)
TOL_WAVE = {"rtol": 1e-4, "atol": 1e-4}
INT16_LSB = 4  # int16 waveform: truncation turns a 1e-5 float difference into at most a few LSB


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


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory) -> Path:
    """The fixture exported to ONNX (fp32) once per session."""
    pytest.importorskip("onnx")
    from tango_rt.export.onnx_export import export_onnx

    return export_onnx(str(FIXTURE), tmp_path_factory.mktemp("export") / "tiny-onnx")


@pytest.fixture(scope="session")
def onnx_fp16_dir(tmp_path_factory) -> Path:
    """The fixture exported with the FP16 precision policy, once per session."""
    pytest.importorskip("onnx")
    from tango_rt.export.onnx_export import export_onnx

    return export_onnx(str(FIXTURE), tmp_path_factory.mktemp("export16") / "tiny-onnx-fp16", precision="fp16")
