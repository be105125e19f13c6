"""The command line: WAVs of the original's length, info, and one-line errors without tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURE, WAV
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
        lines = result.stderr.splitlines()
        assert lines[-1].startswith("tango-rt: error: ") and "Traceback" not in result.stderr
        assert all(line.startswith(("tango-rt: error: ", "tango-rt: warning: ")) for line in lines), lines


@pytest.mark.parametrize("name", ["clip.wav", "clip.flac"])
def test_one_clip_to_a_named_file(tmp_path, capsys, name):
    target = tmp_path / name
    code = main(["generate", "A dog barks", "--model", str(FIXTURE), "--steps", "2", "--seed", "0", "--device",
                 "cpu", "--scheduler", "dpm++", "--duration", "2.5", "-o", str(target), "-q"])
    assert code == 0 and capsys.readouterr().out.split() == [str(target)]
    data, rate = soundfile.read(str(target), dtype="int16")
    assert target.is_file() and rate == 16000 and data.shape == (40000,)
    assert soundfile.info(str(target)).format == name.split(".")[1].upper()


def test_cli_refuses_what_it_would_otherwise_ignore(tmp_path, capsys):
    assert main(["generate", "a", "b", "--model", str(FIXTURE), "-o", str(tmp_path / "x.wav")]) == 2
    assert "names one file but 2 clips are asked for" in capsys.readouterr().err
    assert main(["build", "--onnx", str(tmp_path), "--out", str(tmp_path / "e"), "--batch", "2"]) == 2
    assert "--batch fix an engine's shape and need --static" in capsys.readouterr().err
    assert main(["generate", "a", "--model", str(FIXTURE), "--scheduler-option", "karras"]) == 2
    assert "--scheduler-option takes KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "a", "--scheduler", "heun"])


def test_generate_edits_audio_files(tmp_path, capsys):
    base = ["--model", str(FIXTURE), "--steps", "2", "--seed", "3", "--device", "cpu", "-q"]
    runs = {
        "variation.wav": ["--audio", str(WAV), "--strength", "0.4"],
        "inpaint.wav": ["--audio", str(WAV), "--inpaint", "0.2:0.4", "--inpaint", "0.8:1.0"],
        "loop.flac": ["--duration", "2", "--loop"],
    }
    for name, extra in runs.items():
        assert main(["generate", "a cough", *base, *extra, "-o", str(tmp_path / name)]) == 0
    lengths = {name: soundfile.read(tmp_path / name, dtype="int16")[0].shape for name in runs}
    assert lengths == {"variation.wav": (20800,), "inpaint.wav": (20800,), "loop.flac": (32000,)}
    original = soundfile.read(WAV, dtype="int16")[0]
    inpainted = soundfile.read(tmp_path / "inpaint.wav", dtype="int16")[0]
    np.testing.assert_array_equal(inpainted[: round(0.2 * 16000)], original[: round(0.2 * 16000)])
    assert main(["generate", "x", *base, "--inpaint", "0.1:0.2"]) == 2  # inpaint needs --audio
    assert "inpaint need(s) input audio" in capsys.readouterr().err


def test_extension_is_written_window_by_window(tmp_path, capsys, monkeypatch):
    """The output file grows as each window finishes: readable (its WAV header current) after every segment."""
    from tango_rt.runtime import audio

    seen = []
    write = audio.AudioStreamWriter.write

    def recording(self, segment):
        write(self, segment)
        seen.append(soundfile.info(self.path).frames)

    monkeypatch.setattr(audio.AudioStreamWriter, "write", recording)
    out = tmp_path / "longer.wav"
    assert main(["generate", "rain", "--model", str(FIXTURE), "--audio", str(WAV), "--extend", "12",
                 "--steps", "1", "--seed", "0", "--device", "cpu", "-q", "-o", str(out)]) == 0
    assert len(seen) == 2 and seen[0] < seen[1] == 20800 + 12 * 16000
    assert capsys.readouterr().out.split() == [str(out)]


def test_generate_with_less_unet_work(tmp_path, capsys):
    out = tmp_path / "turbo.wav"
    assert main(["generate", "rain", "--model", str(FIXTURE), "--steps", "4", "--scheduler", "unipc", "--duration",
                 "0.5", "--guidance-interval", "0.3:5", "--cache-interval", "2", "--cache-schedule", "center",
                 "--seed", "1", "--device", "cpu", "-q", "-o", str(out)]) == 0
    assert soundfile.read(out, dtype="int16")[0].shape == (8000,)
    assert main(["generate", "rain", "--model", str(FIXTURE), "--cache-interval", "0", "--device", "cpu"]) == 2
    assert "cache_interval must be an integer in [1, 50], got 0" in capsys.readouterr().err
