"""The OpenVINO backend: FP32 against the original's golden outputs (same bounds as ONNX Runtime), BF16 and INT8
weights against FP32 with `tango-rt check`'s thresholds, the lean import, mixing, and bad options."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURE, INT16_LSB, TOL_VAE_ENCODER, outputs
from tango_rt.export.check import compare, thresholds
from tango_rt.runtime.errors import BackendError
from tango_rt.runtime.specs import COMPONENTS, component_specs, dims

ov = pytest.importorskip("openvino")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def ov_tango(onnx_dir):
    from tango_rt import Tango

    return Tango(str(onnx_dir), backend="openvino", cache_dir="")


def _bf16_here() -> bool:
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_fp32_networks_run_in_fp32(ov_tango):
    """What OpenVINO compiled is read back: FP32 asked, FP32 run (the golden and shape checks on this backend are
    in tests/test_conformance.py)."""
    assert {c.effective_precision for c in ov_tango.pipeline.components.values()} == {"fp32"}


def test_bf16_runs_in_bf16_within_its_thresholds_or_is_refused(onnx_dir, tiny_tango):
    from tango_rt import Tango

    if not _bf16_here():
        with pytest.raises(BackendError, match="no BF16 support here"):
            Tango(str(onnx_dir), backend="openvino", precision="bf16", cache_dir="")
        return
    bf16 = Tango(str(onnx_dir), backend="openvino", precision="bf16", cache_dir="")
    assert bf16.pipeline.components["unet"].effective_precision == "bf16"  # static, not run yet: what was asked
    config = bf16.pipeline.config
    low_cosine, low_snr = thresholds("bf16")
    for name in COMPONENTS:
        feeds = component_specs(config)[name].sample_inputs(dims(config, 1, 16), config, seed=6)
        reference = outputs(tiny_tango.pipeline.component(name)(**feeds))  # the torch FP32 reference
        metrics = compare(outputs(bf16.pipeline.component(name)(**feeds)), reference)
        assert metrics["finite"] and metrics["cosine"] >= low_cosine and metrics["snr_db"] >= low_snr, (name, metrics)
        if name != "text_encoder":  # the precision policy keeps T5 in FP32
            assert metrics["snr_db"] < 120  # really BF16: not bit-identical to FP32
    effective = {n: c.effective_precision for n, c in bf16.pipeline.components.items()}
    assert effective == {"text_encoder": "fp32", "unet": "bf16", "vae_decoder": "bf16", "vocoder": "bf16",
                         "vae_encoder": "bf16", "unet_shallow": "bf16"}
    unet = bf16.pipeline.components["unet"]
    assert [key[0] for key in unet.compiled] == [(2, 8, 256, 16)]  # static shapes: compiled for the shape it met
    bf16.generate("a second shape", steps=1, seed=0, duration=1.0)
    bf16.generate("a third one", steps=1, seed=0, duration=2.0)
    assert [key[0] for key in unet.compiled] == [(2, 8, 32, 16), (2, 8, 56, 16)]  # the oldest was dropped


def test_int8_weights_export(tmp_path, ov_tango):
    pytest.importorskip("nncf")
    from tango_rt import Tango
    from tango_rt.export.check import check_model
    from tango_rt.export.onnx_export import export_onnx

    folder = export_onnx(str(FIXTURE), tmp_path / "int8w", precision="int8-weights")
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in ("unet", "text_encoder"):
        entry = manifest["components"][name]
        assert entry["format"] == "openvino" and entry["precision"] == "int8-weights"
        assert entry["file"] == f"{name}.xml" and entry["compressed_weights"] > 0
    assert manifest["components"]["vocoder"]["format"] == "onnx"
    int8 = Tango(str(folder), backend="openvino", cache_dir="")
    assert int8.pipeline.components["unet"].effective_precision == "int8-weights+fp32"
    rows = check_model(str(folder), backend="openvino", cache_dir="")
    assert all(r.passed for r in rows), rows
    assert any(r.snr_db < 120 for r in rows if r.component == "unet")  # the weights really changed
    with pytest.raises(BackendError, match=r"backend 'onnxruntime' cannot run text_encoder: .* use backend 'openvino'"):
        Tango(str(folder), backend="onnxruntime")


def test_lean_path_imports_no_torch(onnx_dir):
    code = f"""
import sys
from tango_rt import Tango
wave = Tango({str(onnx_dir)!r}, backend="openvino", cache_dir="").generate("a bell", steps=2, seed=0)
assert wave.shape == (163872,), wave.shape
print("heavy:", sorted(m for m in ("torch", "transformers", "diffusers") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "heavy: []" in result.stdout, result.stdout + result.stderr


def test_mixed_with_onnxruntime_and_the_model_cache(onnx_dir, tiny_tango, tmp_path):
    from tango_rt import Tango

    mixed = Tango(str(onnx_dir), backend="text_encoder=onnxruntime,default=openvino", cache_dir=str(tmp_path))
    assert {n: c.backend for n, c in mixed.pipeline.components.items()} == {
        "text_encoder": "onnxruntime", "unet": "openvino", "vae_decoder": "openvino", "vocoder": "openvino"}
    a = mixed.generate("water", steps=2, seed=1, scheduler="ddim")
    b = tiny_tango.generate("water", steps=2, seed=1, scheduler="ddim")  # the torch reference
    assert np.abs(a.astype(np.int32) - b).max() <= INT16_LSB
    assert any(tmp_path.iterdir()), "compiled models were cached"


@pytest.mark.parametrize(("options", "message"), [
    ({"device": "tpu"}, "OpenVINO device 'tpu' is not available here"),
    ({"precision": "fp8"}, "openvino precision must be one of"),
    ({"performance_hint": "fast"}, "performance_hint must be one of"),
    ({"providers": ["CPUExecutionProvider"]}, r"option\(s\) \['providers'\] do not apply"),
])
def test_bad_options_are_clear_errors(onnx_dir, options, message):
    from tango_rt import Tango

    with pytest.raises(BackendError, match=message):
        Tango(str(onnx_dir), backend="openvino", **options)


@pytest.mark.parametrize("name", ["text_encoder", "unet"])
def test_static_shapes_pad_prompt_lengths_to_one_compile(onnx_dir, tiny_tango, name):
    """Static shapes compile per input shape: prompt lengths 5 and 9 share one padded shape (a multiple of 16
    tokens, masked out), and the real positions compute what the torch reference computes."""
    from conftest import TOL_EMBEDDINGS, TOL_UNET
    from tango_rt import Tango
    from tango_rt.runtime.backends.ov_backend import TEXT_BUCKET

    static = Tango(str(onnx_dir), backend="openvino", static_shapes=True, cache_dir="").pipeline.components[name]
    config = tiny_tango.pipeline.config
    for text_len in (5, 9):
        feeds = component_specs(config)[name].sample_inputs(dims(config, 2, text_len, 16), config, seed=text_len)
        if "attention_mask" in feeds:
            feeds["attention_mask"][:, -2:] = 0  # padding inside the prompt stays what it was
        first = component_specs(config)[name].output_names[:1]  # the UNet's noise prediction
        out = static(outputs=first, **feeds)
        np.testing.assert_allclose(out, tiny_tango.pipeline.components[name](outputs=first, **feeds),
                                   **(TOL_EMBEDDINGS if name == "text_encoder" else TOL_UNET))
    assert len(static.compiled) == 1
    assert next(iter(static.compiled))[component_specs(config)[name].input_names.index(
        "input_ids" if name == "text_encoder" else "encoder_hidden_states")][1] == TEXT_BUCKET


def test_outputs_are_read_by_name_not_by_position(onnx_dir, ov_tango, tmp_path):
    """The VAE encoder's mean and log-variance have one shape: a graph that declares them in the other order must
    not swap them. The exported graph with its outputs reversed, compiled as the backend compiles it, gives the
    same (mean, logvar) as the original graph."""
    import onnx
    import openvino as ov

    from tango_rt.runtime.backends.ov_backend import OpenVINOComponent
    from tango_rt.runtime.specs import VAE_ENCODER

    graph = onnx.load(str(onnx_dir / "vae_encoder.onnx"))
    reversed_outputs = list(graph.graph.output)[::-1]
    del graph.graph.output[:]
    graph.graph.output.extend(reversed_outputs)
    path = tmp_path / "vae_encoder_reversed.onnx"
    onnx.save(graph, str(path))
    spec = component_specs(ov_tango.pipeline.config)[VAE_ENCODER]
    core = ov.Core()
    model = core.read_model(str(path))
    assert [p.get_any_name() for p in model.outputs] == spec.output_names[::-1]
    component = OpenVINOComponent(spec, core, model, path, "CPU", {}, None, "fp32", static_shapes=False)
    mel = spec.sample_inputs(dims(ov_tango.pipeline.config, 1, 8, 32), ov_tango.pipeline.config, seed=3)
    expected = ov_tango.pipeline.component(VAE_ENCODER)(**mel)
    got = component(**mel)
    assert not np.allclose(expected[0], expected[1])  # the test would not see a swap otherwise
    for a, b in zip(got, expected, strict=True):  # two compilations of one computation: kernel rounding only
        np.testing.assert_allclose(a, b, **TOL_VAE_ENCODER)
