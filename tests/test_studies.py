"""Every study (studies/) still runs: its own logic on the tiny model or a small case, so a study cannot rot
unnoticed between the runs that recorded its results. The studies are scripts, not installed; they are loaded
from their files here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import STUDIES, study


def test_every_study_has_its_folder_script_results_and_readme_line():
    readme = (STUDIES / "README.md").read_text()
    for folder in sorted(p for p in STUDIES.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        assert (folder / f"{folder.name}.py").is_file(), folder
        assert f"[{folder.name}]({folder.name}/)" in readme, folder.name


def test_more_steps_get_closer_and_the_preset_rule():
    sampler_quality = study("sampler_quality")
    result = sampler_quality.evaluate(steps_list=(5, 25, 100), samplers=("ddpm", "dpm++", "ddim"), count=1024, dim=4)
    dpm = result["rows"]["dpm++"]
    assert dpm["5"]["pf"] > dpm["25"]["pf"] > dpm["100"]["pf"] and dpm["5"]["sw"] > dpm["100"]["sw"]
    preset = sampler_quality.recommend(result)
    assert preset["sw"] <= result["rows"]["ddpm"]["100"]["sw"] and preset["steps"] <= 100
    assert preset["aggressive"]["steps"] <= preset["steps"]


def test_loop_overhead_counts_what_a_gpu_backend_copies_per_step():
    loop_overhead = study("loop_overhead")

    row = loop_overhead.measure("ddim", 2, 1, 1)
    latents = 2 * 8 * 256 * 16 * 4  # the CFG batch of full-size latents, float32
    embeddings = 2 * loop_overhead.TEXT_LEN * 1024 * 4
    mask = 2 * loop_overhead.TEXT_LEN  # bool
    assert row["h2d_bytes_per_step"] == latents + 2 * 4 + embeddings + mask  # + the two timesteps
    assert row["d2h_bytes_per_step"] == latents and row["loop_ms_per_step"] > 0


def test_first_gpu_check_writes_its_table_and_reports_a_failed_variant_as_a_row(tmp_path):
    """The GPU script's own logic, on the CPU with the tiny model: FP32 timed, FP32 with the turbo plan (the shallow
    network) timed and checked against FP32 on the probe, FP16 (CUDA only) a failed row, the files written, a
    non-zero exit so a failure is not mistaken for a pass."""

    assert study("first_gpu").main(["--device", "cpu", "--model", "random:tiny", "--variants", "fp32,fp32+turbo,fp16",
                                    "--repeat", "1", "--steps", "8", "--duration", "1", "--out", str(tmp_path)]) == 1
    rows = json.loads((tmp_path / "first_gpu.json").read_text())["rows"]
    assert rows["fp32"]["unet_step_s"] > 0 and rows["fp32"]["finite"] is True
    assert rows["fp32+turbo"]["finite"] is True and rows["fp32+turbo"]["unet_cosine"] > 0.9999
    assert "CUDA" in rows["fp16"]["error"]
    table = (tmp_path / "first_gpu.md").read_text()
    assert "| fp32 |" in table and "| fp16 | failed:" in table


def test_unet_memory_breakdown_records_every_stage(onnx_dir):
    """studies/ov_unet_memory on the tiny export: the stages and the /proc fields README's memory section reads
    (the full-size figures come from the recorded run)."""
    pytest.importorskip("openvino")
    ov_unet_memory = study("ov_unet_memory")
    run = ov_unet_memory.measure(str(onnx_dir), "fp32")
    assert list(run["stages"]) == ["read", "compiled, model dropped", "step 1", "step 2"]
    assert all(stage[field] > 0 for stage in run["stages"].values() for field in ov_unet_memory.FIELDS)
    assert run["weights_file_mb"] > 0


def test_the_inpainting_study_conditions_the_truth_exactly_and_runs_both_rules():
    """The exact conditional against the same Gaussian conditioned through the joint precision matrix (another
    derivation), the mode the known frames came from found, and the study's own loop on a small case."""
    rule = study("inpaint_rule")
    from oracle import Truth

    truth = Truth()
    clip = (truth.means[2, 1] @ truth.basis.T).reshape(8, 8, 16)
    exact = rule.Conditional(truth, 2, clip)
    assert exact.weights[1] > 0.999
    cov = rule.SPREAD**2 * truth.basis @ truth.basis.T + rule.NOISE**2 * np.eye(len(truth.basis))
    precision = np.linalg.inv(cov)
    u, k = exact.u, exact.k
    mean = truth.means[2, 1] @ truth.basis.T
    offset = clip.ravel()[k] - mean[k]
    by_precision = mean[u] - np.linalg.solve(precision[np.ix_(u, u)], precision[np.ix_(u, k)] @ offset)
    np.testing.assert_allclose(exact.means[1], by_precision, atol=1e-6)
    np.testing.assert_allclose(exact.chol @ exact.chol.T, np.linalg.inv(precision[np.ix_(u, u)]), atol=1e-6)
    drawn = exact.sample(4, np.random.default_rng(0))
    known = rule.known_mask()[0]
    np.testing.assert_array_equal(drawn[:, :, known], np.repeat(clip[None], 4, 0)[:, :, known])
    oracle = str(Path(__file__).parent / "fixtures" / "oracle")
    result = rule.evaluate(oracle, count=8, clips=1, samplers=("fast",), prompts=(0,))
    assert set(result["rows"]["fast"]) == {"fresh", "initial"} and result["choice"] in ("fresh", "initial")
    assert all(row["sw"] > 0 and row["seam"] > 0 for row in result["rows"]["fast"].values())
