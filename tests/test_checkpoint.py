"""Checkpoint resolution and strict loading: every failure names the file and the keys and says what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURE
from tango_rt.runtime.checkpoint import load_checkpoint
from tango_rt.runtime.errors import CheckpointError

torch = pytest.importorskip("torch")


def _load(folder: Path):
    from tango_rt import Tango

    return Tango(str(folder), device="cpu")


def _edit_weights(path: Path, edit) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    edit(state)
    torch.save(state, path)


def test_missing_file(fixture_copy):
    (fixture_copy / "pytorch_model_vae.bin").unlink()
    with pytest.raises(CheckpointError, match=r"not a Tango checkpoint: missing pytorch_model_vae\.bin"):
        _load(fixture_copy)


def test_missing_key(fixture_copy):
    _edit_weights(fixture_copy / "pytorch_model_main.bin", lambda s: s.pop("unet.conv_in.bias"))
    with pytest.raises(CheckpointError, match=r"pytorch_model_main.bin: the UNet .* missing keys: unet.conv_in.bias"):
        _load(fixture_copy)


def test_unexpected_key(fixture_copy):
    _edit_weights(fixture_copy / "pytorch_model_main.bin", lambda s: s.update({"unet.extra.weight": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys: unet\.extra\.weight"):
        _load(fixture_copy)


def test_shape_mismatch(fixture_copy):
    _edit_weights(
        fixture_copy / "pytorch_model_main.bin",
        lambda s: s.update({"text_encoder.encoder.final_layer_norm.weight": torch.ones(31)}),
    )
    expected = r"shape mismatches: text_encoder\.encoder\.final_layer_norm\.weight \(31,"
    with pytest.raises(CheckpointError, match=expected):
        _load(fixture_copy)


def test_foreign_prefix(fixture_copy):
    _edit_weights(fixture_copy / "pytorch_model_main.bin", lambda s: s.update({"group_in.weight": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys outside text_encoder., unet.: group_in.weight"):
        _load(fixture_copy)


def test_unexpected_vae_key(fixture_copy):
    extra = {"decoder.extra.weight": torch.zeros(1)}
    _edit_weights(fixture_copy / "pytorch_model_vae.bin", lambda s: s.update(extra))
    with pytest.raises(CheckpointError, match=r"unexpected VAE keys: decoder\.extra\.weight"):
        _load(fixture_copy)


def test_vocoder_config_is_an_override_of_the_16k_defaults(fixture_copy):
    assert load_checkpoint(str(fixture_copy)).vocoder_config["upsample_initial_channel"] == 64
    (fixture_copy / "vocoder_config.json").unlink()
    assert load_checkpoint(str(fixture_copy)).vocoder_config["upsample_initial_channel"] == 1024
    with pytest.raises(CheckpointError, match=r"vocoder \(HiFi-GAN\) weights .* shape mismatches: vocoder.conv_pre"):
        _load(fixture_copy)


def test_invalid_json(fixture_copy):
    (fixture_copy / "vae_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"vae_config\.json is not valid JSON"):
        load_checkpoint(str(fixture_copy))


def test_not_a_folder_nor_a_hub_id(tmp_path):
    with pytest.raises(CheckpointError, match="neither an existing folder nor a Hugging Face Hub id"):
        load_checkpoint(str(tmp_path / "nope" / "deeper" / "still"))
    with pytest.raises(CheckpointError, match="unknown random model size"):
        load_checkpoint("random:huge")


def test_unet_model_name_is_refused(fixture_copy):
    main = json.loads((fixture_copy / "main_config.json").read_text())
    (fixture_copy / "main_config.json").write_text(json.dumps({**main, "unet_model_name": "some/unet"}))
    with pytest.raises(CheckpointError, match=r"unet_model_name='some/unet'"):
        load_checkpoint(str(fixture_copy))


def test_hub_id_downloads_only_what_generation_needs(monkeypatch, tmp_path):
    """The Hub path, with snapshot_download answered from the fixture: which files does it ask for?"""
    calls = []
    t5_dir = tmp_path / "flan"
    t5_dir.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (t5_dir / name).write_bytes((FIXTURE / "flan-t5-tiny" / name).read_bytes())
    main = json.loads((FIXTURE / "main_config.json").read_text())

    def fake_snapshot_download(repo_id, allow_patterns, revision=None):
        calls.append((repo_id, sorted(allow_patterns)))
        if repo_id == "google/flan-t5-large":
            return str(t5_dir)
        root = tmp_path / "tango2"
        if not root.exists():
            import shutil

            shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("golden.*", "flan-t5-tiny"))
            (root / "main_config.json").write_text(json.dumps({**main, "text_encoder_name": "google/flan-t5-large"}))
        return str(root)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    checkpoint = load_checkpoint("declare-lab/tango2")
    assert checkpoint.tokenizer_dir == t5_dir
    tango_files = ["main_config.json", "vae_config.json", "pytorch_model_main.bin", "pytorch_model_vae.bin"]
    assert calls[0] == ("declare-lab/tango2", sorted([*tango_files, "vocoder_config.json"]))
    assert calls[1] == ("google/flan-t5-large", sorted(
        ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    ))  # config and tokenizer only: the T5 weights come from pytorch_model_main.bin


def test_offline_uncached_hub_id_is_a_clear_error(tmp_path):
    """A real huggingface_hub call, offline with an empty cache, in a fresh process so its env is read."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = "from tango_rt.runtime.checkpoint import load_checkpoint; load_checkpoint('declare-lab/tango2')"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "could not get Tango checkpoint 'declare-lab/tango2' from the Hugging Face Hub" in result.stderr
    assert "offline" in result.stderr and "local folder" in result.stderr


def test_offline_text_encoder_hub_id(fixture_copy, tmp_path):
    main = json.loads((fixture_copy / "main_config.json").read_text())
    (fixture_copy / "main_config.json").write_text(json.dumps({**main, "text_encoder_name": "google/flan-t5-large"}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = f"from tango_rt.runtime.checkpoint import load_checkpoint; load_checkpoint({str(fixture_copy)!r})"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "could not get text encoder config and tokenizer 'google/flan-t5-large'" in result.stderr


def test_fallbacks_are_announced(fixture_copy):
    """No silent fallback: a UNet config path that does not resolve, a UNet config unlike Tango's, and vocoder
    keys that mean nothing here each raise a TangoWarning naming the file."""
    from tango_rt.runtime.errors import TangoWarning

    with pytest.warns(TangoWarning, match="UNet config differs from Tango's in .*block_out_channels"):
        load_checkpoint(str(fixture_copy))
    main = json.loads((fixture_copy / "main_config.json").read_text())
    (fixture_copy / "main_config.json").write_text(json.dumps({**main, "unet_model_config_path": "nowhere.json"}))
    with pytest.warns(TangoWarning, match="'nowhere.json' is not in the checkpoint; using the Tango UNet config"):
        load_checkpoint(str(fixture_copy))
    vocoder = json.loads((fixture_copy / "vocoder_config.json").read_text())
    (fixture_copy / "vocoder_config.json").write_text(json.dumps({**vocoder, "upsampel_rates": [5]}))
    with pytest.warns(TangoWarning, match=r"ignoring unknown key\(s\) \['upsampel_rates'\]"):
        load_checkpoint(str(fixture_copy))
    (fixture_copy / "vocoder_config.json").write_text(json.dumps({**vocoder, "resblock": "2"}))
    with pytest.raises(CheckpointError, match="resblock '2' is not supported"):
        load_checkpoint(str(fixture_copy))


def test_the_release_layout_uses_the_shipped_unet_config_quietly(fixture_copy, recwarn):
    """Tango's releases name configs/diffusion_model_config.json of the original source tree: expected, no warning."""
    main = json.loads((fixture_copy / "main_config.json").read_text())
    main["unet_model_config_path"] = "configs/diffusion_model_config.json"
    (fixture_copy / "main_config.json").write_text(json.dumps(main))
    checkpoint = load_checkpoint(str(fixture_copy))
    assert checkpoint.unet_config["block_out_channels"] == [320, 640, 1280, 1280]
    assert not [w for w in recwarn if "UNet" in str(w.message)]


def _fake_hub(monkeypatch, repos: dict, calls: list, tmp_path):
    """snapshot_download answered from local folders: only the files matching allow_patterns are copied into the
    snapshot, as the Hub client does, so a test sees exactly what would be downloaded."""
    import fnmatch
    import shutil

    def fake(repo_id, allow_patterns, revision=None):
        calls.append((repo_id, sorted(allow_patterns), revision))
        if repo_id not in repos:
            raise OSError(f"404 {repo_id}")
        source, snapshot = repos[repo_id], tmp_path / "hub" / repo_id.replace("/", "--") / (revision or "main")
        for path in source.rglob("*"):
            relative = path.relative_to(source).as_posix()
            if path.is_file() and any(fnmatch.fnmatch(relative, p) for p in allow_patterns):
                (snapshot / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, snapshot / relative)
        snapshot.mkdir(parents=True, exist_ok=True)
        return str(snapshot)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake)


def test_an_export_on_the_hub_loads_by_id_fetching_only_what_its_backends_run(monkeypatch, tmp_path, onnx_dir):
    from tango_rt import Tango

    calls: list = []
    _fake_hub(monkeypatch, {"org/tango-tiny-onnx": onnx_dir}, calls, tmp_path)
    tango = Tango("org/tango-tiny-onnx", backend={"text_encoder": "torch", "default": "onnxruntime"}, revision="v1")
    assert tango.generate("a bell", steps=2, duration=1.0, seed=0, scheduler="ddim").shape == (16000,)
    assert calls[0] == ("org/tango-tiny-onnx", ["manifest.json", "scheduler_config.json", "tokenizer/*"], "v1")
    fetched = calls[1][1]
    assert calls[1][2] == "v1" and "unet.onnx" in fetched and "vocoder.onnx" in fetched
    assert not any(name.startswith("text_encoder") for name in fetched)  # runs on torch: no T5 graph downloaded


def test_info_on_a_hub_checkpoint_reads_configs_without_the_weights(monkeypatch, tmp_path):
    import shutil

    from tango_rt.runtime.info import describe

    release = tmp_path / "release"  # the fixture as a release lays it out: T5 named by its Hub id
    shutil.copytree(FIXTURE, release, ignore=shutil.ignore_patterns("golden.*", "flan-t5-tiny"))
    main = json.loads((FIXTURE / "main_config.json").read_text())
    (release / "main_config.json").write_text(json.dumps({**main, "text_encoder_name": "google/flan-t5-large"}))
    calls: list = []
    _fake_hub(monkeypatch, {"declare-lab/tango2": release, "google/flan-t5-large": FIXTURE / "flan-t5-tiny"}, calls,
              tmp_path)
    info = describe("declare-lab/tango2")
    requested = [pattern for _, patterns, _ in calls for pattern in patterns]
    assert "pytorch_model_main.bin" not in requested and "pytorch_model_vae.bin" not in requested
    assert "weights: not read (configs only)" in info["summary"] and info["parameters"]["unet"] > 0


def test_weight_digests_are_cached_by_size_and_mtime(monkeypatch, tmp_path):
    import os

    from tango_rt.runtime import files

    monkeypatch.setenv("TANGO_RT_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"a" * 1000)
    hashed = []
    real = files.sha256_files
    monkeypatch.setattr(files, "sha256_files", lambda paths: hashed.append(1) or real(paths))
    first = files.cached_sha256([weights])
    assert files.cached_sha256([weights]) == first and len(hashed) == 1  # the second load reads no bytes
    weights.write_bytes(b"b" * 1000)  # same size, rewritten: a new mtime
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert files.cached_sha256([weights]) != first and len(hashed) == 2
