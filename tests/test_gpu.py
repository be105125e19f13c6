"""The PyTorch CUDA fast path (FP16, upcast VAE attention, CUDA graphs). Runs only where CUDA is available."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURE
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
