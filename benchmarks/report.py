"""Bench results as a terminal/markdown table, results.json and a per-stage chart (chart.png)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..runtime.instrument import STAGES
from .machine import peak_tflops


def _db(value: float) -> str:
    return "ref" if value == float("inf") else f"{value:.1f}"


def _fmt(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if unit == "x" else f"{value:.3f}"


def _memory_limit_lines(result: dict) -> list[str]:
    """Under --memory-limit-mb: each variant's cgroup figures (what the limit charged, and kills)."""
    limit = result["config"].get("memory_limit_mb")
    if not limit:
        return []
    lines = ["", f"Each variant ran in a {limit} MB memory cgroup without swap (benchmarks/memory_limit.py); its peak "
             "charge counts anonymous memory and page cache (which the kernel reclaims at the limit):", "",
             "| variant | result | cgroup peak MB | OOM kills |", "|---|---|---|---|"]
    for name, v in result["variants"].items():
        report = v.get("memory_limit") or {}
        peak = report.get("cgroup_peak_mb")
        lines.append(f"| {name} | {'failed' if 'error' in v else 'completed'} | "
                     f"{'-' if peak is None else f'{peak:.0f}'} | {report.get('oom_kills', '-')} |")
    return lines


def _unet_work_lines(result: dict) -> list[str]:
    """UNet GFLOP per clip (analytic, runtime/flops.py), where steps were cached the shallow call's cost, and the
    UNet's effective TFLOP/s against the machine's peak for the arithmetic it mostly runs in."""
    work = result["config"].get("unet_work") or {}
    lines = ["", f"UNet work per clip (guidance interval {work.get('guidance_interval')}, cache interval "
             f"{work.get('cache_interval', 1)} {work.get('cache_schedule', 'uniform')}):", "",
             "| variant | batch | UNet GFLOP per clip | full call s | shallow call s | shallow / full "
             "| UNet TFLOP/s | peak TFLOP/s (unit) | of peak |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, v in result["variants"].items():
        kind = v.get("arithmetic")
        peak = _peak(result["machine"], kind)
        ceiling = "-" if peak is None else f"{peak[0]:.2f} ({kind}, {peak[1]})"
        for batch, run in v.get("batches", {}).items():
            full, shallow = run["stages"]["unet_step"].get("median"), run["stages"].get("unet_shallow", {}).get(
                "median")
            gflop, tflops = run.get("unet_gflop_per_clip"), run.get("unet_tflops")
            share = "-" if not (tflops and peak) else f"{tflops / peak[0]:.1%}"
            lines.append(f"| {name} | {batch} | {'-' if gflop is None else f'{gflop:.0f}'} | {_fmt(full)} | "
                         f"{_fmt(shallow)} | {'-' if not (full and shallow) else f'{shallow / full:.1%}'} | "
                         f"{'-' if tflops is None else f'{tflops:.2f}'} | "
                         f"{ceiling} | "
                         f"{share} |")
    return lines


def _peak(machine: dict, arithmetic: str | None) -> tuple[float, str] | None:
    if not arithmetic or not machine.get("ghz") or not machine.get("cores"):
        return None
    return peak_tflops(arithmetic, machine.get("cpu_flags", []), machine["cores"], machine["ghz"])


def _audio_in_lines(result: dict) -> list[str]:
    """Audio input's cost per clip of the bench's length: the mel front end (numpy) and the VAE encoder."""
    rows = [(name, v["audio_in"]) for name, v in result["variants"].items() if v.get("audio_in")]
    if not rows:
        return []
    lines = ["", "Audio in (variations, inpainting, extension): per clip of this length, medians:", "",
             "| variant | mel front end s | VAE encoder s | encoder load s |", "|---|---|---|---|"]
    for name, audio in rows:
        lines.append(f"| {name} | {_fmt(audio['audio_to_mel'].get('median'))} | "
                     f"{_fmt(audio['vae_encoder'].get('median'))} | {audio['encoder_load_s']:.1f} |")
    return lines


def table(result: dict) -> str:
    """One row per variant and batch size: per-generation stage medians, end-to-end, RTF, memory, speed-ups."""
    config = result["config"]
    duration = f"{config['duration']} s clips" if config.get("duration") else "10.24 s clips"
    lines = [
        f"tango-rt bench: {config['model']}, {config['steps']} {config['scheduler']} steps, {duration}, "
        f"guidance {config['guidance']}, warm-up {config['warmup']}, repeat {config['repeat']}",
        f"machine: {result['machine']['cpu']} ({result['machine']['cores']} cores; "
        f"{' '.join(result['machine'].get('cpu_flags', [])) or 'no ISA flags read'}); "
        f"GPUs: {', '.join(result['machine']['gpus']) or 'none'}",
        "",
        "| variant | batch | load s | tokenize s | text enc s | UNet step s (median / p95) | VAE s | vocoder s "
        "| end-to-end s | RTF | clips/s | peak RSS MB | peak anon MB | GPU MB | speed-up e2e | speed-up UNet step "
        "| UNet cosine / SNR dB vs baseline |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    speedups = result.get("speedup_vs_baseline", {})
    for name, v in result["variants"].items():
        if "error" in v:
            lines.append(f"| {name} | - | {v['error']} |")
            continue
        gpu_memory = v.get("gpu_memory") or {}
        gpu = gpu_memory.get("peak_allocated_mb", gpu_memory.get("device_used_mb"))
        for batch, run in v["batches"].items():
            gen, step = run["per_generation"], run["stages"]["unet_step"]
            ratio = speedups.get(name, {}).get(batch, {})
            error = v.get("unet_vs_baseline")
            accuracy = "-" if not error else ("NaN/Inf" if not error["finite"] else
                                              f"{error['cosine']:.6f} / {_db(error['snr_db'])}")
            rss = "-" if v["peak_rss_mb"] is None else f"{v['peak_rss_mb']:.0f}"
            anon = "-" if v.get("peak_anon_mb") is None else f"{v['peak_anon_mb']:.0f}"
            lines.append(
                f"| {name} | {batch} | {v['load_s']:.1f} | {_fmt(gen['tokenize'].get('median'))} | "
                f"{_fmt(gen['text_encoder'].get('median'))} | {_fmt(step.get('median'))} / {_fmt(step.get('p95'))} | "
                f"{_fmt(gen['vae_decoder'].get('median'))} | {_fmt(gen['vocoder'].get('median'))} | "
                f"{_fmt(run['end_to_end']['median'])} | {run['rtf']:.3f} | {run['throughput_clips_per_s']:.3f} | "
                f"{rss} | {anon} | {'-' if gpu is None else f'{gpu:.0f}'} | "
                f"{_fmt(ratio.get('end_to_end'), 'x')} | {_fmt(ratio.get('unet_step'), 'x')} | {accuracy} |"
            )
    lines += _unet_work_lines(result)
    lines += _audio_in_lines(result)
    lines += _memory_limit_lines(result)
    lines += _extrapolated_lines(result)
    lines += ["", "Stage times are medians per generation (the UNet column is per step); RTF = seconds of audio "
              f"per second of compute; speed-ups and UNet errors are against the baseline, {result['baseline']}, "
              "of this run (the UNet error on one fixed input). Peak anon MB: the process's private memory "
              "(sampled every 20 ms), which leaves out the weight files a backend maps (clean page cache the kernel "
              "can drop; RSS counts it). GPU MB: torch's allocator peak, else the process's device memory from "
              "nvidia-smi."]
    return "\n".join(lines)


def _extrapolated_lines(result: dict) -> list[str]:
    """Seconds at other step counts (benchmarks/child.py's extrapolate); none where a guidance interval was set."""
    steps = next((list(run.get("extrapolated_s", {})) for v in result["variants"].values()
                  for run in v.get("batches", {}).values()), [])
    if not steps:
        return []
    lines = ["", "Seconds per generation at other step counts, from the per-stage medians above (tokenize + text "
             "encoder + full and shallow UNet calls as the cache plan makes them + VAE + vocoder):", "",
             "| variant | batch | " + " | ".join(f"{n} steps" for n in steps) + " |", "|---|---|" + "---|" * len(steps)]
    for name, v in result["variants"].items():
        for batch, run in v.get("batches", {}).items():
            values = run.get("extrapolated_s", {})
            lines.append(f"| {name} | {batch} | " + " | ".join(f"{values[n]:.2f}" for n in values) + " |")
    return lines


def chart(result: dict, path: Path) -> Path | None:
    """Stacked bars: where one generation's time goes, per variant (first batch size)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: chart.png not written: matplotlib is missing (pip install 'tango-rt[bench]')", file=sys.stderr)
        return None
    names = [n for n, v in result["variants"].items() if "error" not in v]
    if not names:
        return None
    batch = str(result["config"]["batches"][0])
    figure, axes = plt.subplots(figsize=(10, 1.4 + 0.6 * len(names)))
    left = [0.0] * len(names)
    for stage in STAGES:
        widths = [result["variants"][n]["batches"][batch]["per_generation"][stage].get("median", 0) for n in names]
        axes.barh(names, widths, left=left, label="unet (all steps)" if stage == "unet_step" else stage)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    axes.set_xlabel(f"seconds per generation (batch {batch}, {result['config']['steps']} steps, median)")
    axes.set_title(f"tango-rt per-stage latency: {result['config']['model']}")
    axes.invert_yaxis()
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def save_study(out: Path, script: str, argv: list[str] | None, machine: dict, result: dict, title: str,
               text: str) -> None:
    """A study's record in `out` (the command that made it, `python <script> <argv>` with the script's path from
    the checkout's root, and the machine first, then its data; its table under `title`), and the table printed:
    what every study's main() ends with."""
    command = " ".join(["python", study_path(script), *(sys.argv[1:] if argv is None else argv)])
    save_results(out, {"command": command, "machine": machine, **result}, f"# {title}\n\n{text}\n")
    print(text)


def study_path(script: str) -> str:
    """A study script's path as README writes it (studies/<name>/<name>.py), wherever the checkout is."""
    path = Path(script).resolve()
    return str(Path(*path.parts[-3:])) if len(path.parts) >= 3 and path.parts[-3] == "studies" else str(script)


def save_results(out: Path, result: dict, markdown: str) -> None:
    """Every benchmark's record: `results.json` (the data) and `results.md` (the table) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "results.md").write_text(markdown if markdown.endswith("\n") else markdown + "\n")


def write_reports(result: dict, out: Path) -> str:
    text = table(result)
    save_results(out, result, f"# Benchmark results\n\nCommand: `{result['command']}`\n\n{text}\n")
    chart(result, out / "chart.png")
    return text
