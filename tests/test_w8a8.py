"""The W8A8 UNet (tango-rt export --precision w8a8): calibrated on sampling trajectories, one QDQ graph that ONNX
Runtime and OpenVINO run and TensorRT's explicit quantization takes, judged against the FP32 torch reference.

The error bound is check's for 8-bit precisions (export/check.py: 15 dB and cosine 0.99, argued from INT8 rounding
and clipping compounded over the UNet's GEMMs), and a quantized graph must also measurably differ from FP32 (below
60 dB, FP32's own bound): a no-op "quantization" fails too."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FIXTURE, study

pytest.importorskip("nncf")
pytest.importorskip("onnx")

from tango_rt.export.calibration import (
    Calibration,
    read_prompts,
    record_calls,
)
from tango_rt.runtime.errors import ArtifactError, InputError
from tango_rt.runtime.precision import PRECISION_POLICY, W8A8, W8A8_DECODERS, W8A8_NETWORKS
from tango_rt.runtime.specs import TEXT_ENCODER, UNET, UNET_SHALLOW, VAE_DECODER, VOCODER

QUANTIZED = W8A8_NETWORKS + W8A8_DECODERS  # the fixture asks for the decoders too (--w8a8-decoders)


CALIBRATION_ROWS = 2  # of the shipped prompts, as a CSV prompt file: one fast and one turbo trajectory
CALIBRATION_CALLS_HERE = 8  # of their 20 full UNet calls (the default, 32, would take all 20 and cost 2.5x in NNCF)


@pytest.fixture(scope="module")
def w8a8_dir(tmp_path_factory):
    """The tiny fixture exported W8A8 with its decoders, calibrated on a CSV of two shipped prompts with the default
    seed, NNCF's statistics over 8 UNet calls (the VAE encoder left out: audio input is not quantized)."""
    pytest.importorskip("torch")
    from tango_rt.export.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("w8a8")
    prompts = folder / "prompts.csv"
    prompts.write_text("prompt\n" + "".join(f'"{p}"\n' for p in read_prompts()[:CALIBRATION_ROWS]))
    return export_onnx(str(FIXTURE), folder / "tiny-w8a8", precision=W8A8,
                       components=[TEXT_ENCODER, UNET, UNET_SHALLOW, VAE_DECODER, VOCODER],
                       calibration=Calibration(str(prompts), calls=CALIBRATION_CALLS_HERE, decoders=True))


def _graph(folder, name):
    import onnx

    return onnx.load(str(folder / f"{name}.onnx"))


def test_the_export_records_its_calibration_and_quantizes_only_what_it_was_asked(w8a8_dir):
    import hashlib

    manifest = json.loads((w8a8_dir / "manifest.json").read_text())
    shipped = read_prompts()
    assert len(shipped) == 16 and len(set(shipped)) == 16  # the package's prompt file, comments skipped
    assert manifest["precision"] == W8A8
    calibration = manifest["calibration"]
    digest = hashlib.sha256("\n".join(shipped[:CALIBRATION_ROWS]).encode()).hexdigest()[:16]
    assert calibration["prompts"] == CALIBRATION_ROWS and calibration["prompts_sha256"] == digest
    assert calibration["calls"] == CALIBRATION_CALLS_HERE and calibration["prompts_file"].endswith("prompts.csv")
    assert calibration["seed"] == 0 and calibration["presets"] == ["fast", "turbo"]
    assert calibration["networks"] == list(QUANTIZED)
    for name, entry in manifest["components"].items():
        assert entry["precision"] == (W8A8 if name in QUANTIZED else "fp32"), name
        quantizers = sum(node.op_type == "QuantizeLinear" for node in _graph(w8a8_dir, name).graph.node)
        assert (quantizers > 0) is (name in QUANTIZED), name
    fused = manifest["components"][UNET].get("ort_graph")  # the FP32 graph's fused twin is gone; a new one is
    if fused:                                                 # of the quantized graph
        assert any(node.op_type == "QuantizeLinear" for node in _graph(w8a8_dir, "unet.ort").graph.node)
    else:
        assert not (w8a8_dir / "unet.ort.onnx").exists()


def test_the_float_islands_stay_float_and_the_shallow_branch_shares_the_unets_ranges(w8a8_dir):
    """No quantized value enters the attention scores, softmax, timestep or time embedding, nor the VAE decoder's
    mid-block attention; the shallow network is cut out of the quantized UNet, so its quantizers' scales are the
    UNet's, bit for bit."""
    from onnx import numpy_helper

    islands = {UNET: ("Softmax", "time_embedding"), UNET_SHALLOW: ("Softmax", "time_embedding"),
               VAE_DECODER: ("mid_block/attentions.0/",), VOCODER: ()}
    for name in QUANTIZED:
        graph = _graph(w8a8_dir, name).graph
        producer = {out: node for node in graph.node for out in node.output}
        excluded = PRECISION_POLICY[name].float_nodes(node.name for node in graph.node)
        assert all(any(part in n for n in excluded) for part in islands[name]), name
        for node in graph.node:
            if node.name in excluded:
                fed = [producer[i].op_type for i in node.input if i in producer]
                assert "DequantizeLinear" not in fed, f"{name}: {node.name} reads an INT8 value"
    scales = [{t.name: numpy_helper.to_array(t) for t in _graph(w8a8_dir, name).graph.initializer
               if "scale" in t.name} for name in W8A8_NETWORKS]
    shared = set(scales[0]) & set(scales[1])
    assert len(shared) >= 10 and all(np.array_equal(scales[0][k], scales[1][k]) for k in shared)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_each_runtime_runs_the_quantized_graph_within_the_int8_bound(w8a8_dir, backend):
    """`check` on held-out trajectory inputs (fast and turbo, guided and unguided calls, the decoders on the runs'
    ends) against FP32 torch."""
    pytest.importorskip(backend)
    from tango_rt.export.check import check_model

    quantized = check_model(str(w8a8_dir), backend, components=QUANTIZED)
    assert {row.component for row in quantized} == set(QUANTIZED)
    assert {"guided" in row.shape for row in quantized if row.component == UNET} == {True, False}
    for row in quantized:
        assert W8A8 in row.precision and 15.0 <= row.snr_db < 60.0 and row.cosine >= 0.99, row


def test_a_turbo_generation_on_the_w8a8_unet_stays_near_fp32(w8a8_dir, tiny_tango):
    """Whole sampling runs: the final latents of the W8A8 UNet on both runtimes against torch FP32, same noise.
    The final latents are the sampler's last clean-signal estimate, so their relative error is of the order of
    one call's (<= 10^(-15/20) = 0.18 by the bound above): cosine >= 1 - 0.18^2 / 2 ~ 0.98, asked here as 0.95."""
    from tango_rt import Tango

    reference = _latents(tiny_tango)
    for backend in ("onnxruntime", "openvino"):
        tango = Tango(str(w8a8_dir), backend=backend)
        latents = _latents(tango)
        cosine = float(np.dot(latents.ravel(), reference.ravel()) / np.linalg.norm(latents) / np.linalg.norm(reference))
        assert 0.95 <= cosine < 0.99999, (backend, cosine)
    components = tango.pipeline.components  # OpenVINO's: W8A8 decoders static by default, the UNet dynamic
    assert [components[name].static_shapes for name in (VAE_DECODER, VOCODER, UNET)] == [True, True, False]


def _latents(tango) -> np.ndarray:
    from tango_rt.runtime.noise import NoiseSource, row_generators
    from tango_rt.runtime.request import GenerationRequest

    request = GenerationRequest.build(["a door slams twice"], preset="turbo", seed=5)
    sampling = tango.runner.sampling(request)
    text = tango.pipeline.encode_text(list(request.prompts), 1, sampling.guided)
    return tango.pipeline.sample(text, sampling, NoiseSource(row_generators(request.seed, 1)))


def test_calibration_runs_are_the_same_for_a_seed_and_differ_for_another(w8a8_dir):
    """Turbo runs for the repeat (its full calls are guided and unguided, its shallow ones are there too); the
    fast / turbo alternation by prompt index on a run with another seed."""
    from tango_rt import Tango

    tango = Tango(str(w8a8_dir), backend="onnxruntime")
    first, again = (record_calls(tango.pipeline, ["a kettle whistles"], seed=3, presets=("turbo",), decode=True)
                    for _ in range(2))
    other = record_calls(tango.pipeline, ["a cat purrs", "a kettle whistles"], seed=4)
    assert [c.network for c in first] == [c.network for c in again]
    assert {c.network for c in first} == set(QUANTIZED)
    vae, vocoder = (c for c in first if c.network in W8A8_DECODERS)  # the run's end, once each, in order
    assert (vae.network, vocoder.network) == W8A8_DECODERS
    mel = tango.pipeline.components[VAE_DECODER](latents=vae.feeds["latents"])[:, 0]  # the vocoder got its mel
    np.testing.assert_allclose(vocoder.feeds["mel"], mel, rtol=1e-6, atol=1e-6)
    assert {c.network for c in other} == set(W8A8_NETWORKS)  # not decoded unless asked
    assert {c.guided for c in first if c.network == UNET} == {True, False}  # turbo's unguided steps are there
    for a, b in zip(first, again, strict=True):
        assert all(np.array_equal(a.feeds[k], b.feeds[k]) for k in a.feeds)
    assert [(c.run, c.preset) for c in other if c.network == UNET][::5] == [(0, "fast"), (0, "fast"), (0, "fast"),
                                                                            (1, "turbo")]
    seed_5 = next(c for c in other if c.run == 1)  # the same prompt and preset as `first`, seed 4 + 1
    assert not np.array_equal(first[0].feeds["sample"], seed_5.feeds["sample"])
    assert all(type(tango.pipeline.components[name]).__name__ != "_Recording" for name in QUANTIZED)  # put back
    assert Calibration().networks == W8A8_NETWORKS  # the decoders only when asked


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read it"),
    ("", "holds no prompts"),
    ("# only a comment\n\n", "holds no prompts"),
    (b"\xff\xfe not utf-8", "cannot read it"),
])
def test_a_bad_calibration_prompt_file_is_refused_before_any_work(tmp_path, content, message):
    from tango_rt.cli import main

    path = tmp_path / "prompts.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=f"--calibration-prompts .*prompts.txt: {message}"):
        Calibration(str(path)).checked()
    out = tmp_path / "out"
    assert main(["export", "--model", str(FIXTURE), "--out", str(out), "--precision", "w8a8",
                 "--calibration-prompts", str(path)]) == 2
    assert not out.exists()


def test_quantized_decoders_need_a_w8a8_export(tmp_path):
    from tango_rt.cli import main

    out = tmp_path / "out"
    assert main(["export", "--model", str(FIXTURE), "--out", str(out), "--w8a8-decoders"]) == 2
    assert not out.exists()
    from tango_rt.export.onnx_export import export_onnx

    with pytest.raises(ArtifactError, match=r"w8a8 quantizes \['vae_decoder', 'vocoder'\] too"):
        export_onnx(str(FIXTURE), out, precision=W8A8, components=[TEXT_ENCODER, UNET, UNET_SHALLOW],
                    calibration=Calibration(decoders=True))
    assert not out.exists()


def test_tensorrt_takes_the_quantized_graph_and_refuses_an_asymmetric_one(w8a8_dir, tmp_path):
    """The build's checks, before TensorRT is imported: a w8a8 export is buildable and its quantizers symmetric;
    a zero point moved off 0 (what an asymmetric quantizer writes) is refused by node name."""
    import onnx
    from onnx import numpy_helper

    from tango_rt.engines.build import BUILDABLE_PRECISIONS, check_explicit_quantization

    assert W8A8 in BUILDABLE_PRECISIONS
    assert check_explicit_quantization(w8a8_dir / "unet.onnx") > 0
    model = _graph(w8a8_dir, UNET)
    node = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    zero = next(t for t in model.graph.initializer if t.name == node.input[2])
    zero.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(zero).shape, 3, np.int8), zero.name))
    onnx.save(model, str(tmp_path / "unet.onnx"))
    with pytest.raises(ArtifactError, match=f"{node.name}.*symmetric INT8"):
        check_explicit_quantization(tmp_path / "unet.onnx")


def test_the_w8a8_cpu_study_runs_its_interleaved_rounds_and_writes_its_table(w8a8_dir, tmp_path):
    """studies/w8a8_cpu's own logic on the tiny export (the same folder on both sides: the mechanics, not a
    speed-up; the full-size figures come from the recorded run)."""
    module = study("w8a8_cpu")
    assert module.main(["--fp32", str(w8a8_dir), "--w8a8", str(w8a8_dir), "--w8a8-decoders", str(w8a8_dir),
                        "--backends", "onnxruntime", "--rounds", "1", "--fp32-preset", "fast",
                        "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["presets"] == {"fp32": "fast", "w8a8": "turbo", module.DECODERS: "turbo"}
    result = record["backends"]["onnxruntime"]
    assert list(result) == ["fp32", "w8a8", module.DECODERS]
    assert result["fp32"]["calls"]["unet_step"]["n"] == 15 and "unet_shallow" not in result["fp32"]["calls"]  # fast
    for label in ("w8a8", module.DECODERS):
        assert len(result[label]["seconds"]) == 1 and result[label]["calls"]["unet_step"]["n"] == 5  # turbo: 5 full
        assert result[label]["calls"]["unet_shallow"]["n"] == 10
    assert set(module.ratios(result, module.DECODERS)) == {"generation", "unet_step", "vae_decoder", "vocoder"}
    assert f"| onnxruntime | {module.DECODERS} |" in (tmp_path / "results.md").read_text()
