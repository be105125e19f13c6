"""ONNX export and the ONNX Runtime backend: dynamic shapes, parity with the torch reference and the golden
outputs, the lean (torch-free) import path, FP16 policy structure, and clear errors for bad artifacts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    FIXTURE,
    INT16_LSB,
    SHAPES,
    TOL_MEL,
    TOL_UNET,
    outputs,
)
from tango_rt.runtime.errors import ArtifactError, BackendError, CheckpointError, InputError
from tango_rt.runtime.specs import COMPONENTS, component_specs, dims

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

# FP16 storage between FP32 kernels (ORT on CPU): each op's output rounds to FP16 (u = 2^-11), independently, so
# the relative error grows like sqrt(depth) * 2^-11: ~2.7e-3 over ~30 layers; x4 margin (conftest's MARGIN)
# and x2 for FP16 weights gives 2e-2.
FP16_MAX_REL = 2e-2
# INT8 dynamic quantization: per-tensor int8 weights and uint8 activations each round to 1/254 of their range,
# ~8e-3 relative per quantized MatMul; ~15 on the tiny UNet's path add like sqrt(15): 3e-2; x3 margin.
INT8_MAX_REL = 0.1


@pytest.fixture(scope="session")
def ort_tango(onnx_dir):
    from tango_rt import Tango

    return Tango(str(onnx_dir), backend="onnxruntime")


def _dims(shape: dict, config) -> dict:
    return dims(config, **shape)


def test_manifest_describes_the_folder(onnx_dir, tiny_tango):
    import hashlib

    from tango_rt.runtime.checkpoint import load_checkpoint

    manifest = json.loads((onnx_dir / "manifest.json").read_text())
    assert manifest["source"]["model"] == str(FIXTURE.resolve())
    assert manifest["source"]["weights_digest"] == load_checkpoint(str(FIXTURE)).weights_digest()
    assert set(manifest["components"]) == set(COMPONENTS)
    specs = component_specs(tiny_tango.pipeline.config)
    for name, entry in manifest["components"].items():
        assert entry["sha256"] == "sha256:" + hashlib.sha256((onnx_dir / entry["file"]).read_bytes()).hexdigest()
        assert [i["name"] for i in entry["inputs"]] == specs[name].input_names
        assert entry["precision"] == "fp32" and entry["opset"] == 17
        onnx.checker.check_model(str(onnx_dir / entry["file"]))
    assert manifest["shape_ranges"]["cfg_batch"][:3] == [1, 2, 16]
    assert {"torch", "onnx", "onnxruntime"} <= set(manifest["exporter"]["versions"])
    assert (onnx_dir / "tokenizer" / "tokenizer.json").is_file() and (onnx_dir / "scheduler_config.json").is_file()


def test_lean_path_imports_no_torch(onnx_dir):
    code = f"""
import sys
from tango_rt import Tango
wave = Tango({str(onnx_dir)!r}, backend="onnxruntime").generate("a bell rings", steps=2, seed=0)
assert wave.shape == (163872,), wave.shape
heavy = sorted(m for m in ("torch", "transformers", "diffusers") if m in sys.modules)
print("heavy:", heavy)
sys.exit(1 if heavy else 0)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "heavy: []" in result.stdout


def test_mixed_backends_per_component(onnx_dir, tiny_tango):
    from tango_rt import Tango

    mixed = Tango(str(onnx_dir), backend={"text_encoder": "torch", "default": "onnxruntime"}, device="cpu")
    backends = {n: c.backend for n, c in mixed.pipeline.components.items()}
    assert backends == {"text_encoder": "torch", "unet": "onnxruntime", "vae_decoder": "onnxruntime",
                        "vocoder": "onnxruntime"}
    a = mixed.generate("water", steps=2, seed=1, scheduler="ddim")
    b = tiny_tango.generate("water", steps=2, seed=1, scheduler="ddim")  # the torch reference
    assert np.abs(a.astype(np.int32) - b).max() <= INT16_LSB


def test_io_binding_path_gives_the_same_result(onnx_dir, ort_tango, golden):
    from tango_rt import Tango

    bound = Tango(str(onnx_dir), backend="onnxruntime", io_binding=True, threads=1)
    assert all(c.io_binding for c in bound.pipeline.components.values())
    mel = bound.pipeline.components["vae_decoder"](latents=golden["ddim_final_latents"])
    np.testing.assert_allclose(mel, golden["vae_mel"], **TOL_MEL)


def _tensor_types(model) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({t.name: t.data_type for t in inferred.graph.initializer})
    return types


def test_fp16_policy_structure(onnx_fp16_dir):
    """FP16 graphs keep the overflow-prone nodes in FP32, with float32 inputs and outputs."""
    manifest = json.loads((onnx_fp16_dir / "manifest.json").read_text())
    precisions = {n: e["precision"] for n, e in manifest["components"].items()}
    assert precisions == {"text_encoder": "fp32", "unet": "fp16", "vae_decoder": "fp16", "vocoder": "fp16",
                          "vae_encoder": "fp16", "unet_shallow": "fp16"}
    FLOAT, HALF = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    for name in ("unet", "vae_decoder", "vocoder", "vae_encoder", "unet_shallow"):
        model = onnx.load(str(onnx_fp16_dir / f"{name}.onnx"))
        types = _tensor_types(model)
        assert all(types[v.name] == FLOAT for v in [*model.graph.input, *model.graph.output] if v.name in types
                   and v.name not in ("input_ids", "attention_mask", "encoder_attention_mask"))
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        assert convs and all(types[n.input[1]] == HALF for n in convs), f"{name}: convolutions should be fp16"
        softmax = [n for n in model.graph.node if n.op_type == "Softmax"]
        if name.startswith("unet"):  # the shallow branch keeps the full UNet's islands
            assert softmax and all(types[n.input[0]] == FLOAT for n in softmax), "UNet attention must stay fp32"
            sincos = [n for n in model.graph.node if n.op_type in ("Sin", "Cos")]
            assert sincos and all(types[n.input[0]] == FLOAT for n in sincos), "time embedding must stay fp32"
            assert manifest["components"][name]["fp32_nodes"] > 0
        if name in ("vae_decoder", "vae_encoder"):
            assert softmax and all(types[n.input[0]] == FLOAT for n in softmax), "VAE mid attention must stay fp32"


def test_fp16_outputs_are_finite_and_close_to_fp32(onnx_fp16_dir, tiny_tango, golden):
    """On CPU, ONNX Runtime computes FP16 graphs with FP32 kernels behind casts: this checks the graph's structure
    and the rounding of FP16 weights and activations between ops, not FP16 arithmetic on a GPU."""
    from tango_rt import Tango

    fp16 = Tango(str(onnx_fp16_dir), backend="onnxruntime")
    config = fp16.pipeline.config
    for name in COMPONENTS:
        feeds = component_specs(config)[name].sample_inputs(_dims(SHAPES[1], config), config, seed=2)
        half = outputs(fp16.pipeline.component(name)(**feeds))
        full = outputs(tiny_tango.pipeline.component(name)(**feeds))  # the torch FP32 reference
        rel = float(np.abs(half - full).max() / np.abs(full).max())
        print(f"fp16 vs fp32 {name}: max rel error {rel:.2e}")
        assert np.isfinite(half).all() and rel < FP16_MAX_REL


# --- bad input ---------------------------------------------------------------------------------------------------


def _copy(onnx_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(onnx_dir, target)
    return target


def test_export_refuses_a_non_checkpoint_and_an_existing_folder(tmp_path, onnx_dir):
    from tango_rt.export.onnx_export import export_onnx

    (tmp_path / "not-tango").mkdir()
    with pytest.raises(CheckpointError, match=r"not a Tango checkpoint: missing main_config\.json"):
        export_onnx(str(tmp_path / "not-tango"), tmp_path / "out")
    with pytest.raises(ArtifactError, match="exists and is not empty; pass --force"):
        export_onnx(str(FIXTURE), onnx_dir)


def test_missing_graph(onnx_dir, tmp_path):
    from tango_rt import Tango

    folder = _copy(onnx_dir, tmp_path)
    (folder / "unet.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"unet\.onnx is missing"):
        Tango(str(folder), backend="onnxruntime")


def test_changed_graph_is_stale(onnx_dir, tmp_path):
    from tango_rt import Tango

    folder = _copy(onnx_dir, tmp_path)
    with open(folder / "vocoder.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match="changed after export"):
        Tango(str(folder), backend="onnxruntime")


def test_incompatible_manifest_version(onnx_dir, tmp_path):
    from tango_rt import Tango

    folder = _copy(onnx_dir, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99, "tango_rt_version": "9.0"}))
    with pytest.raises(ArtifactError, match=r"manifest format 99 .* this tango-rt reads format 1"):
        Tango(str(folder), backend="onnxruntime")


def test_foreign_graph_is_refused(onnx_dir, tmp_path):
    """A graph swapped for another component's, with the manifest updated to match its bytes."""
    from tango_rt import Tango
    from tango_rt.export.folders import file_entry

    folder = _copy(onnx_dir, tmp_path)
    shutil.copy(folder / "vocoder.onnx", folder / "unet.onnx")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["components"]["unet"].update(file_entry(folder, "unet.onnx"))
    del manifest["components"]["unet"]["ort_graph"]  # else onnxruntime runs the (intact) fused graph
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="does not match the unet declaration"):
        Tango(str(folder), backend="onnxruntime")


def test_inputs_outside_the_declared_ranges(ort_tango):
    config = ort_tango.pipeline.config
    unet = ort_tango.pipeline.components["unet"]
    spec = component_specs(config)["unet"]
    too_big = spec.sample_inputs({"cfg_batch": 18, "text_len": 4, "latent_frames": 16}, config)
    with pytest.raises(InputError, match=r"cfg_batch = 18 is outside the supported range \[1, 16\]"):
        unet(**too_big)
    odd = spec.sample_inputs({"cfg_batch": 2, "text_len": 4, "latent_frames": 12}, config)
    with pytest.raises(InputError, match="latent_frames = 12 is not a multiple of 8"):
        unet(**odd)
    with pytest.raises(InputError, match="clips per call"):
        ort_tango.generate_for_batch(["a"] * 5, steps=1, samples=2)
    assert ort_tango.generate("still usable", steps=1, seed=0).shape == (163872,)


def test_durations_on_onnxruntime(ort_tango):
    """1 s, 2.5 s, the original's 10.24 s and the longest the export's declared range allows (40.96 s) in one pass;
    beyond it, long-form windows (runtime/editor.py) of the exact length; one pass past the range is refused."""
    config = ort_tango.pipeline.config
    longest = config.duration(ort_tango.pipeline.ranges["latent_frames"].max)
    for seconds in (1, 2.5, 10.24, longest, 41):
        wave = ort_tango.generate("a bell", steps=1, duration=seconds, seed=0, scheduler="ddim")
        assert wave.shape == (config.audio_samples(seconds),) and wave.std() > 0
    with pytest.raises(InputError, match=r"duration 41\.28 s .* 0\.32 s to 40\.96 s .* --max-duration"):
        ort_tango.latent_frames(41)


def test_export_max_duration_widens_the_declared_range(tiny_tango):
    from tango_rt.runtime.specs import ShapeProfile

    config = tiny_tango.pipeline.config
    assert ShapeProfile(max_duration=60).ranges(config)["latent_frames"].max == config.latent_frames_for(60)
    assert ShapeProfile(max_duration=5).ranges(config)["latent_frames"].opt == config.latent_frames_for(5)


def test_no_silent_drops(onnx_dir, ort_tango):
    """An unexpected input name and providers that contradict the device are errors, not ignored."""
    from tango_rt import Tango
    from tango_rt.runtime.errors import BackendError

    with pytest.raises(InputError, match=r"unexpected input\(s\) \['scale'\]"):
        ort_tango.pipeline.components["vae_decoder"](latents=np.zeros((1, 8, 16, 16), np.float32), scale=np.ones(1))
    with pytest.raises(BackendError, match="contradicts the onnxruntime providers"):
        Tango(str(onnx_dir), backend="onnxruntime", device="cuda", providers=["CPUExecutionProvider"])


def test_wrong_dtype_is_an_input_error(ort_tango):
    with pytest.raises(InputError, match="input 'latents' has dtype float64, expected float32"):
        ort_tango.pipeline.components["vae_decoder"](latents=np.zeros((1, 8, 16, 16)))


def test_onnxruntime_needs_an_exported_folder():
    from tango_rt import Tango

    with pytest.raises(BackendError, match="export first"):
        Tango(str(FIXTURE), backend="onnxruntime")


def test_unavailable_provider_is_a_clear_error(onnx_dir):
    from tango_rt import Tango

    with pytest.raises(BackendError, match=r"providers \['NoSuchExecutionProvider'\] are not available"):
        Tango(str(onnx_dir), backend="onnxruntime", providers=["NoSuchExecutionProvider"])
    with pytest.raises(BackendError, match="do not apply to backend"):
        Tango(str(FIXTURE), backend="torch", providers=["CPUExecutionProvider"])


def test_mixing_with_different_source_weights_is_refused(onnx_dir, tmp_path, fixture_copy):
    from tango_rt import Tango

    folder = _copy(onnx_dir, tmp_path)
    state = torch.load(fixture_copy / "pytorch_model_main.bin", weights_only=True)
    state["unet.conv_in.bias"] += 1
    torch.save(state, fixture_copy / "pytorch_model_main.bin")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["source"]["model"] = str(fixture_copy)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="was exported from weights sha256:"):
        Tango(str(folder), backend={"text_encoder": "torch", "default": "onnxruntime"}, device="cpu")


def test_cli_export_and_generate(tmp_path, capsys):
    from tango_rt.cli import main

    out = tmp_path / "cli-onnx"
    assert main(["export", "--model", str(FIXTURE), "--out", str(out), "--max-batch", "2"]) == 0
    assert json.loads((out / "manifest.json").read_text())["shape_ranges"]["batch"][2] == 2
    assert main(["export", "--model", str(FIXTURE), "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    wavs = tmp_path / "wavs"
    assert main(["generate", "a cat", "--model", str(out), "--backend", "onnxruntime", "--steps", "1",
                 "-o", str(wavs), "-q"]) == 0
    assert len(list(wavs.glob("*.wav"))) == 1


def test_int8_unet_option(tmp_path, tiny_tango):
    """--precision int8: the UNet's MatMul weights quantized dynamically (a CPU option), convolutions and the
    policy's attention / timestep nodes left in float; everything else exported in fp32."""
    from tango_rt import Tango
    from tango_rt.export.onnx_export import export_onnx

    folder = export_onnx(str(FIXTURE), tmp_path / "int8", precision="int8", components=COMPONENTS)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["components"]["unet"]["precision"] == "int8-dynamic"
    assert {manifest["components"][n]["precision"] for n in ("text_encoder", "vae_decoder", "vocoder")} == {"fp32"}
    graph = onnx.load(str(folder / "unet.onnx"), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    assert "MatMulInteger" in ops and "ConvInteger" not in ops and "Conv" in ops
    attention = [n for n in graph.node if n.name.endswith(("/attn1/MatMul", "/attn2/MatMul_1"))]
    assert attention and all(n.op_type == "MatMul" for n in attention), "attention scores must stay float"
    int8 = Tango(str(folder), backend="onnxruntime")
    config = int8.pipeline.config
    feeds = component_specs(config)["unet"].sample_inputs(_dims(SHAPES[1], config), config, seed=2)
    quantized = int8.pipeline.components["unet"](outputs=["noise_pred"], **feeds)
    full = tiny_tango.pipeline.components["unet"](outputs=["noise_pred"], **feeds)  # the torch FP32 reference
    rel = float(np.abs(quantized - full).max() / np.abs(full).max())
    print(f"int8 vs fp32 unet: max rel error {rel:.2e}")
    assert np.isfinite(quantized).all() and rel < INT8_MAX_REL


def test_a_process_pinned_to_fewer_cpus_gets_that_many_threads(monkeypatch):
    """ONNX Runtime sizes its pool from the machine, not the affinity mask; pinned to one of two CPUs (taskset, a
    cpuset), the session gets one thread unless told otherwise; with every CPU, ONNX Runtime's own choice (0)."""
    import os

    from tango_rt.runtime.backends.ort_backend import make_session_options

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert make_session_options().intra_op_num_threads == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1}, raising=False)
    assert make_session_options().intra_op_num_threads == 1
    assert make_session_options(threads=2).intra_op_num_threads == 2


def test_arena_option_reaches_the_session(onnx_dir):
    from tango_rt import Tango

    shared = Tango(str(onnx_dir), backend="onnxruntime").pipeline.components["unet"].session.get_session_options()
    assert shared.enable_cpu_mem_arena and shared.get_session_config_entry("session.use_env_allocators") == "1"
    for arena in ("session", False):
        lean = Tango(str(onnx_dir), backend="onnxruntime", arena=arena)
        options = lean.pipeline.components["unet"].session.get_session_options()
        assert options.enable_cpu_mem_arena is (arena == "session")
        with pytest.raises(RuntimeError, match="does not have configuration with key"):
            options.get_session_config_entry("session.use_env_allocators")
    assert lean.generate("a bell", steps=1, seed=0).shape == (163872,)
    with pytest.raises(BackendError, match="arena must be one of"):
        Tango(str(onnx_dir), backend="onnxruntime", arena="big")


def _fused_nodes(path: Path) -> dict[str, int]:
    """MultiHeadAttention nodes of a graph: torch module name -> num_heads."""
    graph = onnx.load(str(path), load_external_data=False).graph
    fused = [n for n in graph.node if n.op_type == "MultiHeadAttention" and n.domain == "com.microsoft"]
    heads = [next(a.i for a in n.attribute if a.name == "num_heads") for n in fused]
    return {n.name.rsplit("/", 1)[0].strip("/").replace("/", "."): h for n, h in zip(fused, heads, strict=True)}


@pytest.mark.parametrize("name", ["unet", "vae_decoder", "vae_encoder"])
def test_export_fuses_exactly_the_unmasked_attention(onnx_dir, tiny_tango, name):
    """The ONNX Runtime graph fuses every attention the torch model runs without a mask (the UNet's
    self-attention, the VAE's mid-block attention), with the torch module's head count, and leaves the
    UNet's masked cross-attention as it was. The truth is diffusers' own modules, not the fusion pass."""
    from diffusers.models.attention_processor import Attention

    manifest = json.loads((onnx_dir / "manifest.json").read_text())
    entry = manifest["components"][name]["ort_graph"]
    fused = _fused_nodes(onnx_dir / entry["file"])
    modules = {n: m for n, m in tiny_tango.pipeline.component(name).module.named_modules() if isinstance(m, Attention)}
    unmasked = {n: m.heads for n, m in modules.items() if not m.is_cross_attention}
    # graph scopes name modules from the network's root: "decoder.mid_block..." for "vae.decoder.mid_block..."
    matched = {m: heads for m in unmasked for f, heads in fused.items() if m == f or m.endswith("." + f)}
    assert unmasked and matched == unmasked and len(fused) == entry["fused_attention"] == len(unmasked)
    plain = onnx.load(str(onnx_dir / f"{name}.onnx"), load_external_data=False).graph
    fused_graph = onnx.load(str(onnx_dir / entry["file"]), load_external_data=False).graph
    softmax = [sum(n.op_type == "Softmax" for n in g.node) for g in (plain, fused_graph)]
    assert softmax == [len(modules), len(modules) - len(unmasked)]
    assert {i.name for i in fused_graph.input} == {i.name for i in plain.input}


@pytest.mark.parametrize("shape", SHAPES[:2], ids=["small", "batch3"])
def test_fused_and_plain_graphs_both_match_torch(onnx_dir, tiny_tango, shape):
    from tango_rt import Tango

    config = tiny_tango.pipeline.config
    feeds = component_specs(config)["unet"].sample_inputs(_dims(shape, config), config, seed=7)
    reference = tiny_tango.pipeline.components["unet"](outputs=["noise_pred"], **feeds)
    for fused, graph in ((None, "unet.ort.onnx"), (False, "unet.onnx")):
        unet = Tango(str(onnx_dir), backend="onnxruntime", fused_attention=fused).pipeline.components["unet"]
        assert unet.graph == graph
        np.testing.assert_allclose(unet(outputs=["noise_pred"], **feeds), reference, **TOL_UNET)


def test_fused_graph_shares_the_external_data_file(onnx_dir, tmp_path, tiny_tango):
    """A graph with external weights (the full-size UNet's case) gets a fused graph that points into the same
    data file instead of copying 3.5 GB."""
    from tango_rt.export.attention_fusion import write_ort_graph

    model = onnx.load(str(onnx_dir / "unet.onnx"))
    onnx.save_model(model, str(tmp_path / "unet.onnx"), save_as_external_data=True, location="unet.onnx.data",
                    size_threshold=0)
    path, count = write_ort_graph(tmp_path / "unet.onnx")
    assert path.name == "unet.ort.onnx" and count == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unet.onnx", "unet.onnx.data", "unet.ort.onnx"]
    fused = onnx.load(str(path), load_external_data=False).graph.initializer
    locations = {entry.value for t in fused for entry in t.external_data if entry.key == "location"}
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in fused) and locations == {"unet.onnx.data"}
    config = tiny_tango.pipeline.config
    feeds = component_specs(config)["unet"].sample_inputs(_dims(SHAPES[1], config), config, seed=3)
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    reference = tiny_tango.pipeline.components["unet"](outputs=["noise_pred"], **feeds)
    np.testing.assert_allclose(out, reference, **TOL_UNET)


def test_changed_fused_graph_is_stale(onnx_dir, tmp_path):
    from tango_rt import Tango

    folder = _copy(onnx_dir, tmp_path)
    with open(folder / "unet.ort.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match=r"unet\.ort\.onnx has .* changed after export"):
        Tango(str(folder), backend="onnxruntime")


def test_a_fused_graph_that_computes_something_else_is_not_written(tmp_path, monkeypatch):
    """The export runs the fused graph against the plain one before keeping it: a fusion with the wrong head
    split (standing for any pattern matched with another meaning) is dropped with a warning."""
    from tango_rt.export import attention_fusion
    from tango_rt.export.onnx_export import export_onnx
    from tango_rt.runtime.errors import TangoWarning

    heads = attention_fusion._heads_from_reshape
    monkeypatch.setattr(attention_fusion, "_heads_from_reshape", lambda g, reshape: 2 * heads(g, reshape))
    with pytest.warns(TangoWarning, match="unet: fused-attention graph rejected"):
        folder = export_onnx(str(FIXTURE), tmp_path / "bad", components=["unet"])
    assert "ort_graph" not in json.loads((folder / "manifest.json").read_text())["components"]["unet"]
    assert not (folder / "unet.ort.onnx").exists()


@pytest.mark.parametrize("name", ["../outside.onnx", "/etc/passwd", "sub/../../x.onnx"])
def test_manifest_entries_outside_the_folder_are_refused(onnx_dir, name, tmp_path):
    from tango_rt.runtime.artifacts import MANIFEST, open_artifact

    onnx_copy = _copy(onnx_dir, tmp_path)
    (tmp_path / "outside.onnx").write_bytes(b"x")
    manifest = json.loads((onnx_copy / MANIFEST).read_text())
    manifest["components"]["unet"]["file"] = name
    (onnx_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="outside the folder"):
        open_artifact(onnx_copy).files("unet", "onnx")


def test_force_replaces_only_folders_tango_rt_wrote_and_never_its_input(tmp_path):
    from tango_rt.export.folders import prepare_output_folder

    mine = tmp_path / "mine"
    prepare_output_folder(mine, force=False)
    (mine / "half-written.onnx").write_bytes(b"x")  # an interrupted export: the mark is there, no manifest yet
    prepare_output_folder(mine, force=True)
    assert not (mine / "half-written.onnx").exists()
    theirs = tmp_path / "photos"
    theirs.mkdir()
    (theirs / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="not a folder tango-rt wrote"):
        prepare_output_folder(theirs, force=True)
    assert (theirs / "holiday.jpg").exists()
    with pytest.raises(ArtifactError, match="would replace the input"):
        prepare_output_folder(mine, force=True, inputs=[mine])
    with pytest.raises(ArtifactError, match="would replace the input"):
        prepare_output_folder(tmp_path, force=True, inputs=[mine / "onnx"])


def test_io_binding_binds_outputs_on_the_sessions_own_gpu(tiny_tango):
    """On cuda:N the session's providers carry device_id N (with_device_id); the outputs must be bound there too,
    not on device 0. A stand-in session on "GPU 1" records what is bound."""
    from tango_rt.runtime.backends.ort_backend import OrtComponent, with_device_id
    from tango_rt.runtime.specs import VOCODER, component_specs

    spec = component_specs(tiny_tango.pipeline.config)[VOCODER]
    bound = []

    class Binding:
        def bind_cpu_input(self, name, array):
            pass

        def bind_output(self, name, device_type="cpu", device_id=0):
            bound.append((name, device_type, device_id))

        def get_outputs(self):
            return [type("Value", (), {"numpy": lambda self: np.zeros((1, 8), np.float32)})()]

    class Session:
        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def get_provider_options(self):
            return {"CUDAExecutionProvider": {"device_id": "1"}, "CPUExecutionProvider": {}}

        def io_binding(self):
            return Binding()

        def run_with_iobinding(self, binding):
            pass

    assert with_device_id(["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda:1")[0] == \
        ("CUDAExecutionProvider", {"device_id": 1})
    component = OrtComponent(spec, Session(), None, io_binding=True, graph="vocoder.onnx")
    component.run({"mel": np.zeros((1, 32, 64), np.float32)}, spec.output_names)
    assert bound == [(name, "cuda", 1) for name in spec.output_names]
