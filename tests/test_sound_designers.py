"""What sound designers reach for: named presets everywhere, prompt files, settings inside every file (and a clip
made again from them), loudness. On the tiny model, through the API and the command line."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from conftest import FIXTURE
from tango_rt.cli import main
from tango_rt.runtime.metadata import read_settings
from tango_rt.runtime.presets import PRESETS

pytest.importorskip("torch")
soundfile = pytest.importorskip("soundfile")
MODEL = ["--model", str(FIXTURE), "--device", "cpu", "-q"]


def _read(path) -> np.ndarray:
    return soundfile.read(path, dtype="int16")[0]


# ---- presets ---------------------------------------------------------------------------------------------------------

def test_a_preset_gives_the_clip_of_its_explicit_options_in_the_api_and_the_cli(tiny_tango, tmp_path):
    explicit = tiny_tango.generate("rain", duration=1.0, seed=3, **PRESETS["turbo"])
    assert np.array_equal(tiny_tango.generate("rain", duration=1.0, seed=3, preset="turbo"), explicit)
    assert not np.array_equal(tiny_tango.generate("rain", duration=1.0, seed=3, preset="fast"), explicit)
    assert main(["generate", "rain", *MODEL, "--duration", "1", "--seed", "3", "--preset", "turbo",
                 "-o", str(tmp_path / "cli.wav")]) == 0
    assert np.array_equal(_read(tmp_path / "cli.wav"), explicit)
    fewer = tiny_tango.generate("rain", duration=1.0, seed=3, preset="turbo", steps=8)  # an explicit option wins
    assert read_settings_steps(tmp_path, "rain", 8) and not np.array_equal(fewer, explicit)


def read_settings_steps(tmp_path, prompt: str, steps: int) -> bool:
    assert main(["generate", prompt, *MODEL, "--duration", "1", "--seed", "3", "--preset", "turbo", "--steps",
                 str(steps), "-o", str(tmp_path / "steps.wav")]) == 0
    return read_settings(tmp_path / "steps.wav")["options"]["steps"] == steps


def test_the_version_and_the_bench_suite_flag(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip().startswith("tango-rt ")


# ---- settings inside every file --------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_settings_are_written_read_back_and_replayed_exactly(tmp_path, suffix):
    out = tmp_path / f"clip{suffix}"
    assert main(["generate", "a dog barks", *MODEL, "--steps", "2", "--duration", "1", "--scheduler", "ddpm",
                 "--guidance-interval", "0.3:5", "-o", str(out)]) == 0
    settings = read_settings(out)
    assert settings["prompt"] == "a dog barks" and isinstance(settings["seed"], int) and settings["row"] == 0
    assert settings["options"]["guidance_interval"] == [0.3, 5.0] and settings["options"]["scheduler"] == "ddpm"
    assert settings["model"]["digest"].startswith("sha256:") and settings["model"]["backends"]["unet"] == "torch"
    assert main(["info", "--clip", str(out)]) == 0
    replayed = tmp_path / f"again{suffix}"
    assert main(["generate", "--replay", str(out), "--device", "cpu", "-q", "-o", str(replayed)]) == 0
    np.testing.assert_array_equal(_read(replayed), _read(out))  # bit for bit: same backend, same machine


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="no ffprobe: run tests/system-packages.sh")
@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_the_settings_are_the_tags_common_tools_read(tmp_path, suffix):
    out = tmp_path / f"clip{suffix}"
    assert main(["generate", "a dog barks", *MODEL, "--steps", "1", "--duration", "0.5", "--seed", "5", "-q",
                 "-o", str(out)]) == 0
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags", "-of", "json", str(out)],
                           capture_output=True, text=True, check=True)
    tags = {k.lower(): v for k, v in json.loads(probe.stdout)["format"]["tags"].items()}
    assert tags["title"] == "a dog barks" and json.loads(tags["comment"])["seed"] == 5


def test_a_row_of_several_samples_replays_its_own_clip(tmp_path):
    assert main(["generate", "wind", *MODEL, "--steps", "2", "--duration", "1", "--samples", "2", "--seed", "9",
                 "-o", str(tmp_path)]) == 0
    second = sorted(tmp_path.glob("*_s1.wav"))[0]
    assert read_settings(second)["row"] == 1
    assert main(["generate", "--replay", str(second), "--device", "cpu", "-q", "-o", str(tmp_path / "r.wav")]) == 0
    np.testing.assert_array_equal(_read(tmp_path / "r.wav"), _read(second))


def test_a_replay_on_another_model_is_warned_about(tmp_path, capsys):
    out = tmp_path / "clip.wav"
    assert main(["generate", "a bell", *MODEL, "--steps", "1", "--duration", "0.5", "-o", str(out)]) == 0
    assert main(["generate", "--replay", str(out), "--model", "random:tiny", "--device", "cpu", "-q",
                 "-o", str(tmp_path / "other.wav")]) == 0
    assert "was made by model digest" in capsys.readouterr().err


def test_a_file_without_settings_is_a_clear_error(tmp_path, capsys):
    plain = tmp_path / "plain.wav"
    soundfile.write(plain, np.zeros(1600, np.int16), 16000)
    assert main(["info", "--clip", str(plain)]) == 2
    assert "holds no tango-rt settings" in capsys.readouterr().err


# ---- prompt files ---------------------------------------------------------------------------------------------------

def test_prompt_files_in_three_forms_with_a_bad_row(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("# sounds\na bell\n\nrain on a roof\n")
    (tmp_path / "p.csv").write_text("prompt,name,seed,duration\na dog,dog,1,1\nbad,,2,-1\nwind,,3,0.5\n")
    (tmp_path / "p.jsonl").write_text('{"prompt": "a cat", "seed": 4, "steps": 1}\nnot json\n'
                                      '{"prompt": "a horn", "name": "horn", "seed": 5, "volume": 3}\n')
    flags = [*MODEL, "--steps", "2", "--duration", "0.5", "--scheduler", "ddim"]
    assert main(["generate", "--prompts", str(tmp_path / "p.txt"), *flags, "-o", str(tmp_path / "txt")]) == 0
    assert len(list((tmp_path / "txt").glob("*.wav"))) == 2
    assert main(["generate", "--prompts", str(tmp_path / "p.csv"), *flags, "-o", str(tmp_path / "csv")]) == 1
    made = sorted(p.name for p in (tmp_path / "csv").glob("*.wav"))
    assert made == ["dog_l2_s1.wav", "wind_l4_s3.wav"]
    assert soundfile.info(tmp_path / "csv" / "dog_l2_s1.wav").frames == 16000  # the row's duration wins
    assert main(["generate", "--prompts", str(tmp_path / "p.jsonl"), *flags, "-o", str(tmp_path / "jsonl")]) == 1
    err = capsys.readouterr().err
    assert "p.csv:3: duration must be" in err and "p.jsonl:2: not JSON" in err and "p.jsonl:3: unknown column" in err
    entries = [json.loads(line) for line in (tmp_path / "jsonl" / "manifest.jsonl").read_text().splitlines()]
    assert [e["file"] for e in entries] == ["a_cat_l1_s4.wav"] and entries[0]["settings"]["options"]["steps"] == 1
    assert entries[0]["seconds"] > 0


def test_an_interrupted_prompt_file_resumes_without_making_anything_twice(tmp_path, monkeypatch):
    import tango_rt.generate as generate

    (tmp_path / "p.txt").write_text("one\ntwo\nthree\n")
    flags = ["generate", "--prompts", str(tmp_path / "p.txt"), *MODEL, "--steps", "1", "--duration", "0.5",
             "--batch-size", "1", "-o", str(tmp_path / "lib")]
    real, calls = generate.write_clips, []

    def interrupted(*args, **kwargs):
        calls.append(kwargs["overrides"][0]["seed"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(generate, "write_clips", interrupted)
    assert main(flags) == 130  # interrupted after the first clip
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "lib").glob("*.wav")}
    assert len(first) == 1
    monkeypatch.setattr(generate, "write_clips", real)
    assert main(flags) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "lib").glob("*.wav")}
    assert len(after) == 3 and all(after[name] == stamp for name, stamp in first.items())  # not made twice
    lines = (tmp_path / "lib" / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["line"] for line in lines) == [1, 2, 3]
    assert main([*flags, "--overwrite"]) == 0 and len((tmp_path / "lib" / "manifest.jsonl").read_text()
                                                      .splitlines()) == 3


# ---- loudness -------------------------------------------------------------------------------------------------------

K_WEIGHTING_48K = (  # ITU-R BS.1770-4, tables 1 and 2: the shelving and high-pass stages at 48 kHz
    ([1.53512485958697, -2.69169618940638, 1.19839281085285], [1.0, -1.69065929318241, 0.73248077421585]),
    ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621]),
)


def bs1770_lufs(wave: np.ndarray, rate: int) -> float:
    """Integrated loudness written from the standard (K-weighting at 48 kHz after resampling, 400 ms blocks with
    75% overlap, the absolute -70 LUFS gate and the relative -10 LU gate): a meter independent of pyloudnorm."""
    import soxr
    from scipy.signal import lfilter

    x = soxr.resample(np.asarray(wave, np.float64), rate, 48000)
    for b, a in K_WEIGHTING_48K:
        x = lfilter(b, a, x)
    block, hop = 19200, 4800
    powers = np.array([np.mean(x[i : i + block] ** 2) for i in range(0, len(x) - block + 1, hop)])
    loud = -0.691 + 10 * np.log10(powers)
    gated = powers[loud > -70]
    relative = -0.691 + 10 * np.log10(gated.mean()) - 10
    return float(-0.691 + 10 * np.log10(gated[-0.691 + 10 * np.log10(gated) > relative].mean()))


@pytest.mark.parametrize("target", [-23.0, -16.0])
def test_loudness_reaches_its_target_under_the_peak_ceiling(tiny_tango, target):
    pytest.importorskip("pyloudnorm")
    pytest.importorskip("scipy")
    wave = tiny_tango.generate("a rumble", steps=3, duration=4.0, seed=1, loudness=target, peak=-1.0)
    level = wave.astype(np.float64) / 32768
    assert abs(bs1770_lufs(level, 16000) - target) <= 0.5 or 20 * np.log10(np.abs(level).max()) > -1.1
    assert 20 * np.log10(np.abs(level).max()) <= -1.0 + 20 * np.log10(1 + 1 / 32768 * 2)
    quiet = tiny_tango.generate("a rumble", steps=3, duration=4.0, seed=1, loudness=-40.0)
    assert abs(bs1770_lufs(quiet / 32768, 16000) + 40.0) <= 0.5


def test_silence_stays_silence_and_short_clips_are_left_alone():
    pytest.importorskip("pyloudnorm")
    from tango_rt.runtime.loudness import normalize

    silent = normalize(np.zeros(32000, np.float32), 16000, -23.0)
    assert silent.gain_db is None and not silent.wave.any()
    hiss = normalize(np.random.default_rng(0).normal(0, 1e-5, 32000).astype(np.float32), 16000, -23.0)
    assert hiss.gain_db is None and np.abs(hiss.wave).max() < 1e-4  # below the -70 LUFS gate: no gain blow-up
    short = normalize(np.full(3000, 0.1, np.float32), 16000, -23.0)
    assert short.gain_db is None
