"""`tango-rt bench`: statistics on known inputs, and a real run on the tiny fixture producing every output."""

from __future__ import annotations

import json
import re

import pytest

from tango_rt.benchmarks.stats import percentile, speedup, summarize
from tango_rt.export.check import THRESHOLDS
from tango_rt.runtime.errors import InputError
from tango_rt.runtime.instrument import STAGES


def test_summary_statistics_on_known_inputs():
    s = summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s["n"], s["mean"], s["median"], s["min"], s["max"]) == (5, 3.0, 3.0, 1.0, 5.0)
    assert s["p95"] == pytest.approx(4.8)  # numpy's linear interpolation: 1 + 0.95 * 4 -> between 4 and 5
    assert s["stdev"] == pytest.approx(1.5811388300841898)
    assert percentile([10.0], 95) == 10.0 and percentile([1.0, 2.0], 50) == 1.5
    assert summarize([]) == {"samples": [], "n": 0}
    assert speedup(summarize([2.0, 2.0]), summarize([1.0])) == 2.0
    assert speedup(summarize([]), summarize([1.0])) is None


def test_percentile_matches_numpy():
    np = pytest.importorskip("numpy")
    values = list(np.random.default_rng(0).random(37))
    for q in (0, 5, 50, 90, 95, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_variants_come_from_the_backend_registry():
    from tango_rt.benchmarks.bench import Variant

    assert Variant.parse("tensorrt").precision == "fp16"  # FP16 engines by default, as README recommends
    assert Variant.parse("torch:fp16+graph") == Variant("torch:fp16+graph", "torch", "fp16", cuda_graph=True)
    assert Variant.parse("ort:int8").backend == "onnxruntime"
    for bad in ("torch:int4", "onnxruntime+graph", "nope"):
        with pytest.raises(InputError, match=re.escape(f"unknown bench variant '{bad}'")):
            Variant.parse(bad)


def test_option_reaches_only_the_backends_that_declare_it(onnx_dir, tmp_path, capsys):
    from tango_rt.benchmarks.bench import BenchConfig, parse_options, prepare
    from tango_rt.cli import main

    assert parse_options(["arena=session", "threads=2", "fused_attention=false"]) == {
        "arena": "session", "threads": 2, "fused_attention": False}
    with pytest.raises(InputError, match="--option takes KEY=VALUE"):
        parse_options(["arena"])
    config = BenchConfig(model=str(onnx_dir), variants=["torch", "onnxruntime"], batches=[1],
                         options={"arena": "session"})
    jobs = prepare(config, tmp_path)
    assert jobs["onnxruntime"]["options"]["arena"] == "session" and "arena" not in jobs["torch"]["options"]
    assert main(["bench", "--model", str(onnx_dir), "--backends", "torch", "--option", "arena=off",
                 "--out", str(tmp_path / "out")]) != 0
    assert "--option ['arena']: no variant's backend takes it" in capsys.readouterr().err


def test_gpu_suite_names_every_gpu_path():
    from argparse import Namespace

    from tango_rt.benchmarks.bench import SUITES, Variant, _settings

    args = Namespace(suite="gpu", backends=None, device=None, random_weights=None, steps=None, batch=None)
    settings = _settings(args)
    variants = [Variant.parse(v) for v in settings["backends"].split(",")]
    assert [v.label for v in variants] == ["torch fp32", "torch fp16", "torch fp16 + CUDA graph",
                                           "onnxruntime fp16", "tensorrt fp16"]
    assert settings["device"] == "cuda" and settings["random_weights"] == "full"
    args.steps = 5
    assert _settings(args)["steps"] == 5 and SUITES["gpu"]["steps"] == 20  # the command line wins


def test_bench_times_the_sampling_presets_with_flags_over_them():
    from tango_rt.benchmarks.bench import sampling
    from tango_rt.cli import build_parser

    def of(*flags):
        args = build_parser().parse_args(["bench", *flags])
        return sampling(args, args.steps)

    assert of() == {"steps": 10, "scheduler": "ddim", "scheduler_options": {}, "unet_work": {
        "guidance_interval": None, "cache_interval": 1, "cache_schedule": "uniform"}}
    turbo = of("--preset", "turbo")
    assert turbo["steps"] == 15 and turbo["scheduler"] == "unipc" and turbo["scheduler_options"] == {
        "use_karras_sigmas": True} and turbo["unet_work"]["guidance_interval"] == [0.5, 3.0]
    assert turbo["unet_work"]["cache_interval"] == 4 and of("--preset", "turbo", "--steps", "20")["steps"] == 20
    with pytest.raises(InputError, match="cache_interval must be"):
        of("--cache-interval", "0")


def test_bench_batch_beyond_the_default_export_range(tmp_path):
    """--batch 9 asks for more clips per call than the default export declares: the cached export is redone
    with a wider range instead of failing in the child."""
    from tango_rt.benchmarks.bench import onnx_folder
    from tango_rt.runtime.artifacts import open_artifact

    folder = onnx_folder("random:tiny", "fp32", tmp_path, max_batch=9)
    assert open_artifact(folder).ranges["batch"].max == 9


def test_bench_on_the_tiny_fixture(onnx_dir, tmp_path, capsys):
    """torch and onnxruntime from the exported tiny model, one process each: JSON with every field, the table,
    the chart, and no torch in the lean variant's process."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("psutil")
    from tango_rt.cli import main

    out = tmp_path / "bench"
    code = main(["bench", "--model", str(onnx_dir), "--backends", "torch,onnxruntime", "--steps", "1",
                 "--duration", "1", "--batch", "1,2", "--warmup", "0", "--repeat", "2", "--device", "cpu",
                 "--out", str(out), "--work", str(tmp_path / "work")])
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    assert result["schema_version"] == 2 and result["machine"]["cores"] >= 1 and result["baseline"] == "torch"
    assert {"cpu", "gpus", "versions", "git_revision"} <= set(result["machine"])
    for name in ("torch", "onnxruntime"):
        variant = result["variants"][name]
        assert variant["load_s"] > 0 and 0 < variant["peak_anon_mb"] <= variant["peak_rss_mb"]
        assert variant["torch_imported"] is (name == "torch")
        assert variant["graphs"]["unet"] == {"torch": None, "onnxruntime": "unet.ort.onnx"}[name]
        for batch in ("1", "2"):
            run = variant["batches"][batch]
            assert set(run["stages"]) == set(STAGES) == set(run["per_generation"])
            assert run["stages"]["unet_step"]["n"] == 2  # 1 step x 2 repeats
            assert run["per_generation"]["tokenize"]["n"] == 2
            for key in ("mean", "median", "p95", "samples"):
                assert key in run["end_to_end"] and key in run["stages"]["vocoder"]
            assert run["rtf"] > 0 and run["throughput_clips_per_s"] > 0
            assert run["unet_gflop_per_clip"] > 0  # analytic, from the export's architecture record
            gen = run["per_generation"]
            seconds = gen["unet_step"]["median"] + gen["unet_shallow"].get("median", 0.0)
            assert run["unet_tflops"] == pytest.approx(int(batch) * run["unet_gflop_per_clip"] / seconds / 1e3)
        audio_in = variant["audio_in"]  # the VAE encoder and the mel front end, timed per clip
        assert audio_in["vae_encoder"]["n"] == 2 and audio_in["vae_encoder"]["median"] > 0
        assert audio_in["audio_to_mel"]["n"] == 2 and audio_in["encoder_load_s"] > 0
    assert set(result["speedup_vs_baseline"]["onnxruntime"]["1"]) >= {"end_to_end", "unet_step", "vocoder"}
    assert result["speedup_vs_baseline"]["torch"]["1"]["end_to_end"] == 1.0
    assert result["variants"]["torch"]["unet_vs_baseline"]["snr_db"] == float("inf")
    error = result["variants"]["onnxruntime"]["unet_vs_baseline"]
    assert error["finite"] and error["cosine"] > THRESHOLDS["fp32"][0] and error["snr_db"] > THRESHOLDS["fp32"][1]
    assert (out / "chart.png").stat().st_size > 1000
    assert "| onnxruntime | 2 |" in (out / "results.md").read_text()
    assert "| onnxruntime | " in (out / "results.md").read_text().split("Audio in")[1]
    assert "speed-up" in capsys.readouterr().out


def test_bench_under_a_memory_limit(onnx_dir, tmp_path, capsys):
    """--memory-limit-mb: a variant that fits completes and records the cgroup's figures; one that cannot fit is
    reported as killed out of memory, with the limit in the message, and the other variants still run."""
    from tango_rt.benchmarks.memory_limit import CGROUP_ROOT, _own_cgroup
    from tango_rt.cli import main

    if _own_cgroup(CGROUP_ROOT) is None:
        pytest.skip("no writable memory cgroup on this machine (needs root or delegation)")
    common = ["bench", "--model", str(onnx_dir), "--backends", "onnxruntime", "--steps", "1", "--warmup", "0",
              "--repeat", "1", "--device", "cpu", "--work", str(tmp_path / "work")]
    assert main([*common, "--memory-limit-mb", "2000", "--out", str(tmp_path / "fits")]) == 0
    result = json.loads((tmp_path / "fits" / "results.json").read_text())
    limit = result["variants"]["onnxruntime"]["memory_limit"]
    assert limit["limit_mb"] == 2000 and limit["oom_kills"] == 0 and 0 < limit["cgroup_peak_mb"] <= 2000
    assert "| onnxruntime | completed |" in (tmp_path / "fits" / "results.md").read_text()
    assert main([*common, "--memory-limit-mb", "64", "--out", str(tmp_path / "small")]) != 0
    assert "variant(s) ['onnxruntime'] failed" in capsys.readouterr().err
    failed = json.loads((tmp_path / "small" / "results.json").read_text())["variants"]["onnxruntime"]
    assert failed["error"].startswith("killed out of memory under the 64 MB limit")


def test_the_machines_peak_follows_its_best_unit_for_the_arithmetic():
    """Dense peak = ops per core per cycle x cores x GHz: AMX, then AVX-512 (VNNI / BF16), then AVX2."""
    from tango_rt.benchmarks.machine import peak_tflops

    vnni = ["avx2", "avx512f", "avx512_vnni"]
    assert peak_tflops("int8", vnni, 2, 2.3) == (pytest.approx(1.1776), "avx512_vnni")  # 256 x 2 x 2.3 / 1000
    assert peak_tflops("fp32", vnni, 2, 2.3) == (pytest.approx(0.2944), "avx512f")  # 64 x 2 x 2.3 / 1000
    assert peak_tflops("bf16", vnni, 2, 2.3) == (pytest.approx(0.2944), "avx512f")  # no BF16 unit: FP32's rate
    amx = [*vnni, "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"]
    assert peak_tflops("int8", amx, 2, 2.0) == (pytest.approx(8.192), "amx_int8")
    assert peak_tflops("bf16", amx, 2, 2.0) == (pytest.approx(4.096), "amx_bf16")
    assert peak_tflops("fp32", ["asimd"], 2, 2.0) is None


def test_the_unet_throughput_and_its_share_of_the_peak_in_the_report():
    """TFLOP/s = batch x analytic GFLOP per clip / seconds a generation spent in the UNet (full + shallow calls);
    the report sets it against the peak of the arithmetic the variant's UNet runs in."""
    from tango_rt.benchmarks.bench import arithmetic
    from tango_rt.benchmarks.child import unet_tflops
    from tango_rt.benchmarks.report import _unet_work_lines

    run = {"per_generation": {"unet_step": {"median": 4.0}, "unet_shallow": {"median": 1.0}},
           "stages": {"unet_step": {"median": 0.8}, "unet_shallow": {"median": 0.1}}, "unet_gflop_per_clip": 1000.0}
    run["unet_tflops"] = unet_tflops(run, batch=2)
    assert run["unet_tflops"] == pytest.approx(0.4)  # 2 clips x 1000 GFLOP in 5 s
    assert unet_tflops({**run, "unet_gflop_per_clip": None}, 2) is None
    assert [arithmetic(*case) for case in (("w8a8", {}, "cpu"), ("int8", {}, None), ("fp32", {"precision": "bf16"},
            None), ("int8-weights", {}, "cpu"), ("fp16", {}, "cuda:1"))] == ["int8", "int8", "bf16", "fp32", None]
    result = {"config": {"unet_work": {}}, "machine": {"cores": 2, "ghz": 2.3, "cpu_flags": ["avx512f", "avx512_vnni"]},
              "variants": {"openvino:w8a8": {"arithmetic": "int8", "batches": {"2": run}}}}
    line = _unet_work_lines(result)[-1]
    assert "| 0.40 | 1.18 (int8, avx512_vnni) | 34.0% |" in line, line


def test_extrapolation_counts_the_cache_plans_full_and_shallow_calls():
    """Seconds at other step counts: the uniform cache plan calls the full UNet on ceil(n / k) steps and the shallow
    network on the rest; with a guidance interval (guided and unguided calls differ in cost) there is none."""
    from tango_rt.benchmarks.child import EXTRAPOLATED_STEPS, extrapolate
    from tango_rt.runtime.specs import UNET_SHALLOW

    fixed = {stage: {"median": 0.0} for stage in STAGES}
    fixed["vae_decoder"] = {"median": 2.0}
    run = {"per_generation": fixed, "stages": {"unet_step": {"median": 10.0}, UNET_SHALLOW: {"median": 3.0}}}
    for interval in (1, 2, 4):
        seconds = extrapolate(run, {"guidance_interval": None, "cache_interval": interval})
        for n in EXTRAPOLATED_STEPS:
            full = -(-n // interval)
            assert seconds[str(n)] == pytest.approx(2.0 + 10.0 * full + 3.0 * (n - full))
    assert extrapolate(run, {"guidance_interval": [0.5, 3.0], "cache_interval": 4}) == {}


def test_a_studys_record_names_its_command_and_machine_before_its_data(tmp_path, capsys):
    from tango_rt.benchmarks.report import save_study

    save_study(tmp_path / "study", "/anywhere/studies/turbo/turbo.py", ["--count", "8"], {"cpu": "test cpu"},
               {"rows": [1, 2]}, "Turbo preset", "| a |")
    record = json.loads((tmp_path / "study" / "results.json").read_text())
    assert list(record) == ["command", "machine", "rows"]
    assert record["command"] == "python studies/turbo/turbo.py --count 8"
    assert record["machine"] == {"cpu": "test cpu"}
    assert (tmp_path / "study" / "results.md").read_text() == "# Turbo preset\n\n| a |\n"
    assert capsys.readouterr().out == "| a |\n"
