"""TensorRT integration on the tiny fixture: build, run, compare with the golden outputs, refuse stale engines.
Runs only where TensorRT, cuda-python and a GPU are present; skipped with the reason elsewhere."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FIXTURE, INT16_LSB, WAV
from tango_rt.runtime.errors import ArtifactError


def _gpu_and_tensorrt() -> str | None:
    try:
        import tensorrt  # noqa: F401

        from tango_rt.runtime.backends.cuda_runtime import CudaRuntime

        CudaRuntime(0)
    except Exception as exc:  # ImportError, BackendError (no device), driver errors
        return f"needs TensorRT, cuda-python and a CUDA GPU: {type(exc).__name__}: {exc}"
    return None


REASON = _gpu_and_tensorrt()
pytestmark = [pytest.mark.tensorrt, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


@pytest.fixture(scope="module")
def engines_fp32(onnx_dir, tmp_path_factory):
    from tango_rt.engines.build import build_engines

    return build_engines(onnx_dir, tmp_path_factory.mktemp("trt") / "fp32")


@pytest.fixture(scope="module")
def engines_fp16(onnx_fp16_dir, tmp_path_factory):
    from tango_rt.engines.build import build_engines

    return build_engines(onnx_fp16_dir, tmp_path_factory.mktemp("trt") / "fp16")


def test_fp32_engines_reproduce_the_golden_run(engines_fp32, golden, golden_meta):
    from tango_rt import Tango
    from tango_rt.runtime.noise import NoiseSource
    from tango_rt.runtime.schedulers import make_scheduler

    tango = Tango(str(engines_fp32), backend="tensorrt")
    text = tango.pipeline.encode_text(golden_meta["prompts"], 1, True)
    noise = NoiseSource.from_seed(0, 3, golden["ddim_init_noise"])
    latents = tango.pipeline.denoise(text, make_scheduler("ddim"), 10, 3.0, noise)
    np.testing.assert_allclose(latents, golden["ddim_final_latents"], rtol=1e-2, atol=1e-2)  # TF32-free fp32
    waves = tango.generate_for_batch(golden_meta["prompts"], steps=10, scheduler="ddim",
                                     latents=golden["ddim_init_noise"])
    assert np.abs(np.stack(waves).astype(np.int32) - golden["vocoder_wave_int16"]).max() <= 64 * INT16_LSB


def test_audio_in_on_engines(engines_fp32, tiny_tango):
    """The VAE encoder's engine and the front end the engine folder carries: the original's latents, and an
    inpainting whose outside is the input exactly (the composite holds on any backend)."""
    import soundfile

    from tango_rt import Tango

    wav = WAV
    golden = np.load(FIXTURE.parent / "audio-in" / "golden.npz")
    tango = Tango(str(engines_fp32), backend="tensorrt")
    np.testing.assert_allclose(tango.encode_audio(wav), golden["tone_16k_latents"][0], rtol=1e-2, atol=1e-2)
    clip = tango.generate("a cough", audio=wav, inpaint=[(0.3, 0.6)], steps=3, seed=1, scheduler="ddim")
    original = soundfile.read(wav, dtype="int16")[0]
    outside = np.ones(len(original), bool)
    outside[round(0.3 * 16000) : round(0.6 * 16000)] = False
    np.testing.assert_array_equal(clip[outside], original[outside])


def test_the_shallow_engine_and_the_turbo_plan_on_engines(engines_fp32, tiny_tango):
    """The UNet engine's deep feature is the torch reference's, the shallow engine fed it returns the full engine's
    noise prediction, and a turbo-plan generation (half-batch unguided steps through the profiles' batch range,
    shallow steps) is the torch reference's within the golden test's bounds."""
    from tango_rt import Tango
    from tango_rt.runtime.presets import TURBO
    from tango_rt.runtime.specs import component_specs, dims

    tango = Tango(str(engines_fp32), backend="tensorrt")
    config = tango.pipeline.config
    feeds = component_specs(config)["unet"].sample_inputs(dims(config, 1, 7, 32), config, seed=3)
    noise_pred, feature = tango.pipeline.components["unet"](**feeds)
    _, torch_feature = tiny_tango.pipeline.components["unet"](**feeds)
    np.testing.assert_allclose(feature, torch_feature, rtol=1e-2, atol=1e-2)  # TF32-free fp32, as above
    shallow = tango.pipeline.component("unet_shallow")(**feeds, deep_feature=feature)
    np.testing.assert_allclose(shallow, noise_pred, rtol=1e-2, atol=1e-2)
    settings = {**TURBO, "duration": 2.0, "seed": 4}
    wave = tango.generate("rain on a tin roof", **settings)
    reference = tiny_tango.generate("rain on a tin roof", **settings)
    assert np.abs(wave.astype(np.int32) - reference).max() <= 64 * INT16_LSB


def test_fp16_engines_pass_check(engines_fp16):
    from tango_rt.export.check import check_model

    rows = check_model(str(engines_fp16))
    assert all(r.passed and r.backend == "tensorrt" for r in rows), rows


def test_static_engines_with_cuda_graph_match_without(onnx_fp16_dir, tmp_path):
    from tango_rt import Tango
    from tango_rt.engines.build import build_engines

    folder = build_engines(onnx_fp16_dir, tmp_path / "static",
                           static={"batch": 1, "text_len": 32, "latent_frames": 256})
    plain = Tango(str(folder), backend="tensorrt").generate("rain", steps=4, seed=1, scheduler="ddim")
    graphed = Tango(str(folder), backend="tensorrt", cuda_graph=True).generate("rain", steps=4, seed=1,
                                                                               scheduler="ddim")
    np.testing.assert_array_equal(plain, graphed)


def test_stale_engines_are_refused(engines_fp32, onnx_dir, tmp_path):
    import shutil

    from tango_rt import Tango

    onnx_copy, engines = tmp_path / "onnx", tmp_path / "engines"
    shutil.copytree(onnx_dir, onnx_copy)
    shutil.copytree(engines_fp32, engines)
    manifest = json.loads((engines / "manifest.json").read_text())
    manifest["built_from"]["folder"] = str(onnx_copy)
    (engines / "manifest.json").write_text(json.dumps(manifest))
    source = json.loads((onnx_copy / "manifest.json").read_text())
    source["components"]["unet"]["sha256"] = "sha256:re-exported"
    (onnx_copy / "manifest.json").write_text(json.dumps(source))
    with pytest.raises(ArtifactError, match="have since changed"):
        Tango(str(engines), backend="tensorrt")
