"""`tango-rt check` on CPU-runnable artifacts (ONNX Runtime fp32 / fp16 / int8), including a broken one."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import FIXTURE
from tango_rt.export.check import THRESHOLDS, check_model, compare

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")


def test_metrics_on_known_inputs():
    ref = np.array([1.0, -1.0, 2.0, 0.0], dtype=np.float32)
    same = compare(ref, ref)
    assert same["snr_db"] == float("inf") and same["cosine"] == pytest.approx(1.0) and same["max_abs"] == 0
    noisy = compare(ref + np.array([0.1, 0, 0, 0], np.float32), ref)
    assert noisy["snr_db"] == pytest.approx(10 * np.log10(6 / 0.01), rel=1e-5)
    assert noisy["max_abs"] == pytest.approx(0.1) and noisy["max_rel"] == pytest.approx(0.05)
    assert compare(np.array([np.nan, 1, 1, 1], np.float32), ref)["finite"] is False


def test_fp32_export_passes_through_the_cli(onnx_dir, capsys, monkeypatch):
    """`tango-rt check` on the FP32 export: exit 0, its table printed, and the rows it judged (kept on their way
    to the table): every network, the fused and the plain graphs, all within FP32's bound."""
    import tango_rt.export.check as check
    from tango_rt.cli import main

    judged = []
    monkeypatch.setattr(check, "check_model", lambda *a, **k: judged.extend(check_model(*a, **k)) or judged)
    assert main(["check", "--model", str(onnx_dir)]) == 0
    assert "| unet | onnxruntime | unet.ort.onnx | fp32 |" in capsys.readouterr().out
    rows = judged
    assert {r.component for r in rows} == {"text_encoder", "unet", "vae_decoder", "vocoder", "vae_encoder",
                                           "unet_shallow"}
    graphs = {(r.component, r.graph) for r in rows}  # the fused and the plain graph both get checked
    assert {("unet", "unet.ort.onnx"), ("unet", "unet.onnx"), ("vae_decoder", "vae_decoder.ort.onnx"),
            ("vae_decoder", "vae_decoder.onnx"), ("vocoder", "vocoder.onnx"), ("vae_encoder", "vae_encoder.onnx"),
            ("vae_encoder", "vae_encoder.ort.onnx")} <= graphs
    assert all(r.passed and r.backend == "onnxruntime" for r in rows), rows
    assert min(r.snr_db for r in rows) > THRESHOLDS["fp32"][1]


def test_fp16_export_passes_its_thresholds(onnx_fp16_dir):
    rows = check_model(str(onnx_fp16_dir))
    assert all(r.passed for r in rows), [(r.component, r.snr_db, r.cosine) for r in rows]
    unet = [r for r in rows if r.component == "unet"]
    assert all(r.precision == "fp16" and r.snr_db < 80 for r in unet)  # really fp16: not bit-exact


@pytest.mark.parametrize("graph", ["unet.onnx", "unet.ort.onnx"])
def test_a_corrupted_graph_fails(onnx_dir, tmp_path, graph):
    """Scale one UNet weight in one of its two graphs: it still loads and runs, and check must say FAIL for
    that graph and only that one."""
    from onnx import numpy_helper

    from tango_rt.export.folders import file_entry

    folder = tmp_path / "broken"
    shutil.copytree(onnx_dir, folder)
    model = onnx.load(str(folder / graph))
    weight = next(t for t in model.graph.initializer if t.name.endswith("conv_out.weight"))
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 3, weight.name))
    onnx.save(model, str(folder / graph))
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["components"]["unet"]
    (entry["ort_graph"] if graph.endswith(".ort.onnx") else entry).update(file_entry(folder, graph))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rows = check_model(str(folder))
    assert rows and all(r.passed == (r.graph != graph) for r in rows), [(r.graph, r.passed) for r in rows]


def test_torch_upcast_keeps_an_fp32_island_in_a_reduced_precision_network(golden):
    """The hook mechanics of the GPU FP16 path, exercised on CPU with bfloat16."""
    import torch

    from tango_rt.runtime.backends.torch_backend import upcast
    from tango_rt.runtime.backends.torch_models import ModelBuilder
    from tango_rt.runtime.checkpoint import load_checkpoint

    vae = ModelBuilder(load_checkpoint(str(FIXTURE))).build(["vae_decoder"])["vae_decoder"].to(torch.bfloat16)
    attention = vae.vae.decoder.mid_block.attentions[0]
    upcast(attention)
    upcast(attention)  # idempotent
    assert attention.to_q.weight.dtype == torch.float32
    with torch.inference_mode():
        mel = vae(torch.from_numpy(golden["ddim_final_latents"][:1]).to(torch.bfloat16))
    assert mel.dtype == torch.bfloat16
    np.testing.assert_allclose(mel.float().numpy(), golden["vae_mel"][:1], atol=0.25)


def test_torch_fp16_applies_the_precision_policy(monkeypatch):
    """The torch FP16 path reads runtime/precision.py: T5 stays FP32 and the VAE's mid-block attention is an
    FP32 island, whatever else is FP16. Checked on CPU by the casts alone (the backend refuses FP16 on CPU for
    speed, so that check is lifted here; no FP16 kernel runs)."""
    import torch

    from tango_rt.runtime.backends import torch_backend
    from tango_rt.runtime.backends.torch_models import ModelBuilder
    from tango_rt.runtime.checkpoint import load_checkpoint
    from tango_rt.runtime.precision import PRECISION_POLICY
    from tango_rt.runtime.specs import component_specs

    monkeypatch.setattr(torch_backend, "_check_options", lambda *args: None)
    checkpoint = load_checkpoint(str(FIXTURE))
    specs = component_specs(checkpoint.pipeline_config())
    components = torch_backend.wrap_modules(ModelBuilder(checkpoint).build(), specs, "cpu", "fp16")
    assert components["text_encoder"].dtype == torch.float32
    assert components["unet"].dtype == torch.float16 and components["vocoder"].dtype == torch.float16
    vae = components["vae_decoder"].module
    islands = PRECISION_POLICY["vae_decoder"].fp32_modules(dict(vae.named_modules()))
    assert islands and all(next(vae.get_submodule(n).parameters()).dtype == torch.float32 for n in islands)
    assert vae.vae.decoder.conv_in.weight.dtype == torch.float16
