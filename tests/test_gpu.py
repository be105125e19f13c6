"""The PyTorch CUDA fast path (FP16, upcast VAE attention, CUDA graphs). Runs only where CUDA is available."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURE, WAV
from tango_rt.export.check import compare

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to torch here)"),
]


@pytest.fixture(scope="module")
def cuda_fp32():
    from tango_rt import Tango

    return Tango(str(FIXTURE), device="cuda", precision="fp32")


def test_cuda_fp32_matches_golden(cuda_fp32, golden, golden_meta):
    waves = cuda_fp32.generate_for_batch(golden_meta["prompts"], steps=10, scheduler="ddim",
                                         latents=golden["ddim_init_noise"])
    # GPU kernels (TF32 convolutions by default) differ from the CPU reference more than thread counts do
    assert np.abs(np.stack(waves).astype(np.int32) - golden["vocoder_wave_int16"]).max() <= 64


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_cuda_fp16_is_finite_and_close_to_fp32(cuda_fp32, golden, cuda_graph):
    from tango_rt import Tango

    fp16 = Tango(str(FIXTURE), device="cuda", precision="fp16", cuda_graph=cuda_graph)
    feeds = {"sample": golden["unet_in_sample"], "timestep": np.full(6, 104, np.float32),
             "encoder_hidden_states": golden["unet_in_encoder_hidden_states"],
             "encoder_attention_mask": golden["unet_in_encoder_attention_mask"]}
    for _ in range(3):  # eager, then (with graphs) capture and replay
        metrics = compare(fp16.pipeline.components["unet"](outputs=["noise_pred"], **feeds), golden["unet_out"])
        assert metrics["finite"] and metrics["snr_db"] > 30 and metrics["cosine"] > 0.999
    mel = fp16.pipeline.components["vae_decoder"](latents=golden["ddim_final_latents"])
    assert compare(mel, golden["vae_mel"])["snr_db"] > 30
    wave = fp16.generate("a bell", steps=3, seed=0)
    assert wave.shape == (163872,) and wave.std() > 0


@pytest.mark.parametrize(("precision", "cuda_graph"), [("fp32", False), ("fp16", True)])
def test_cuda_shallow_network_turbo_plan_and_audio_in(tiny_tango, precision, cuda_graph):
    """First contact for what the CPU tests cover on the CPU. The shallow network fed a full call's deep feature
    returns that call (the same layers on the same inputs: equal on the CPU; here far above the FP16 bound), and the
    feature matters (half of it: ~7 dB on the CPU). The turbo plan (half-batch unguided steps, shallow steps,
    through CUDA graphs) gives finite, non-silent audio, and in FP32 with TF32 off the CPU reference's to a few
    LSB (the golden test's 64-LSB bound, which holds with TF32 on). The VAE encoder agrees with the CPU one."""
    from tango_rt import Tango
    from tango_rt.runtime.presets import TURBO
    from tango_rt.runtime.specs import component_specs, dims

    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        tango = Tango(str(FIXTURE), device="cuda", precision=precision, cuda_graph=cuda_graph)
        config = tango.pipeline.config
        feeds = component_specs(config)["unet"].sample_inputs(dims(config, 1, 7, 32), config, seed=3)
        noise_pred, feature = tango.pipeline.components["unet"](**feeds)
        shallow = tango.pipeline.component("unet_shallow")
        assert compare(shallow(**feeds, deep_feature=feature), noise_pred)["snr_db"] > 40
        assert compare(shallow(**feeds, deep_feature=feature * 0.5), noise_pred)["snr_db"] < 20
        reference = tiny_tango.pipeline.components["unet"](outputs=["noise_pred"], **feeds)
        assert compare(noise_pred, reference)["snr_db"] > 30
        settings = {**TURBO, "duration": 2.0, "seed": 4}
        for _ in range(2):  # with graphs: capture, then replay
            wave = tango.generate("rain on a tin roof", **settings)
            assert wave.shape == (32000,) and np.isfinite(wave.astype(np.float32)).all() and wave.std() > 0
        if precision == "fp32":
            cpu = tiny_tango.generate("rain on a tin roof", **settings)
            assert np.abs(wave.astype(np.int32) - cpu).max() <= 64
        wav = WAV
        assert compare(tango.encode_audio(wav), tiny_tango.encode_audio(wav))["snr_db"] > 30
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
