"""What sound design costs at full size, each in one real run: a plain 10.24 s clip (the baseline of the ratios), a
variation of a 10 s clip at strength 0.5, a 60 s long-form clip with its time to first segment, and an 8 s loop;
plus the audio front end and the VAE encoder per 10 s clip.

    python studies/editing_cost/editing_cost.py --model EXPORT --backend openvino --precision bf16 \\
        --out studies/editing_cost/results

EXPORT is `tango-rt export --model random:full` (timing needs no trained weights). Defaults are the CPU preset:
UniPC with Karras sigmas at 15 steps. Every stage is timed inside the calls (runtime/instrument.py), so the UNet
call count per feature is recorded next to its wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tango_rt.benchmarks.machine import machine_info
from tango_rt.benchmarks.report import save_study
from tango_rt.runtime.instrument import Recorder, instrument
from tango_rt.runtime.tango import Tango

PROMPT = "Rain falling on a tin roof with distant thunder"


def _timed(recorder: Recorder, run: Callable[[], object]) -> dict:
    recorder.reset()
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    calls = {stage: len(times) for stage, times in recorder.calls.items()}
    spent = {stage: round(sum(times), 3) for stage, times in recorder.calls.items()}
    return {"seconds": seconds, "calls": calls, "stage_seconds": spent, "result": result}


def measure(tango: Tango, steps: int, scheduler: str, options: dict) -> dict:
    recorder = Recorder()
    instrument(tango.pipeline, recorder)
    preset = dict(steps=steps, scheduler=scheduler, scheduler_options=options, seed=0)
    rows: dict[str, dict] = {}
    # warm-up at the clip length: first calls compile (OpenVINO compiles per shape) and allocate; shapes only a
    # feature uses (long-form's last window, a loop's) are compiled inside that feature's time, as a user sees it
    # the first time (OpenVINO's model cache keeps them for later processes)
    tango.generate(PROMPT, **{**preset, "steps": 1})
    plain = _timed(recorder, lambda: tango.generate(PROMPT, **preset))
    rows["plain 10.24 s clip"] = plain
    # 10 s of audio to vary: seeded noise and a tone (random weights make near-silent audio; content costs nothing)
    t = np.arange(160000, dtype=np.float32) / tango.sample_rate
    source = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.random.default_rng(0).standard_normal(t.size)).astype(
        np.float32)
    tango.encode_audio(source[:16000])  # the VAE encoder loads on first use: not part of a variation's time
    rows["audio front end + VAE encoder, 10 s"] = _timed(recorder, lambda: tango.encode_audio(source))
    rows["variation of a 10 s clip, strength 0.5"] = _timed(
        recorder, lambda: tango.generate(PROMPT, audio=source, strength=0.5, **preset))
    first: list[float] = []

    def long_form() -> int:
        started, total = time.perf_counter(), 0
        for segment in tango.generate_stream(PROMPT, 60, **preset):
            if not first:
                first.append(time.perf_counter() - started)
            total += len(segment)
        return total

    rows["60 s long-form clip"] = _timed(recorder, long_form)
    rows["60 s long-form clip"]["first_segment_s"] = first[0]
    rows["8 s loop"] = _timed(recorder, lambda: tango.generate(PROMPT, duration=8.0, loop=True, **preset))
    for row in rows.values():
        row.pop("result", None)
        row["vs_plain_clip"] = row["seconds"] / plain["seconds"]
    return rows


def table(rows: dict[str, dict], context: str) -> str:
    lines = [context, "", "| what | seconds | x plain clip | UNet calls | UNet s | VAE enc s | VAE dec s | vocoder s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        calls, spent = row["calls"], row["stage_seconds"]
        extra = f" (first segment after {row['first_segment_s']:.1f} s)" if "first_segment_s" in row else ""
        lines.append(f"| {name}{extra} | {row['seconds']:.1f} | {row['vs_plain_clip']:.2f} | "
                     f"{calls.get('unet_step', 0)} | {spent.get('unet_step', 0):.1f} | "
                     f"{spent.get('vae_encoder', 0):.2f} | {spent.get('vae_decoder', 0):.1f} | "
                     f"{spent.get('vocoder', 0):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an exported folder of random:full (or a checkpoint)")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--scheduler", default="unipc")
    parser.add_argument("--karras", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", default="studies/editing_cost/results")
    args = parser.parse_args(argv)
    machine = machine_info()
    options = {"use_karras_sigmas": True} if args.karras else {}
    tango = Tango(args.model, backend=args.backend, **({"precision": args.precision} if args.precision else {}))
    rows = measure(tango, args.steps, args.scheduler, options)
    context = (f"Sound design at full size ({args.model}, {args.backend} {args.precision or 'fp32'}, {args.scheduler}"
               f"{' + Karras sigmas' if args.karras else ''}, {args.steps} steps), one run on {machine['cpu']} "
               f"({machine['cores']} cores). x plain clip: the feature's time over the plain 10.24 s clip's time in "
               "this run. UNet calls count guided calls (batch 2).")
    text = table(rows, context)
    save_study(Path(args.out), __file__, argv, machine, {"config": vars(args), "rows": rows}, "Sound design cost",
               text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
