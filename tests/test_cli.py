"""The command line: WAVs of the original's length, info, and one-line errors without tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import FIXTURE
from tango_rt.cli import main

soundfile = pytest.importorskip("soundfile")
pytest.importorskip("torch")


def test_generate_writes_16k_wavs(tmp_path, capsys):
    out = tmp_path / "wavs"
    code = main(["generate", "A dog barks", "Rain on a roof", "--model", str(FIXTURE), "--steps", "2",
                 "--samples", "2", "--seed", "0", "--device", "cpu", "-o", str(out), "-q"])
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 4 and all(p.endswith(".wav") for p in printed)
    for path in printed:
        data, rate = soundfile.read(path, dtype="int16")
        assert rate == 16000 and data.shape == (163872,) and data.std() > 0
    assert sorted(p.name for p in out.iterdir())[0] == "00_a_dog_barks_s0.wav"


def test_info_lists_components_and_parameters(capsys):
    assert main(["info", "--model", str(FIXTURE)]) == 0
    text = capsys.readouterr().out
    assert "unet" in text and "0.83 M parameters" in text and "163872 samples" in text
    assert '"upcast_attention": true' in text


def test_info_random_full_counts_the_real_architecture(capsys):
    assert main(["info", "--model", "random:full", "--json"]) == 0
    import json

    params = json.loads(capsys.readouterr().out)["parameters"]
    assert round(params["unet"] / 1e6, 1) == 865.9 and round(params["text_encoder"] / 1e6, 1) == 341.2


def test_user_errors_exit_2_without_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    for args in (
        ["generate", "x", "--model", str(tmp_path / "missing" / "a" / "b")],
        ["generate", "x", "--model", str(FIXTURE), "--steps", "0", "--device", "cpu"],
        ["generate", "x", "--model", str(FIXTURE), "--backend", "nope"],
    ):
        result = subprocess.run([sys.executable, "-m", "tango_rt.cli", *args], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("tango-rt: error: ") and "Traceback" not in result.stderr
