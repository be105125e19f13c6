"""The turbo preset against the fast preset at full size, each a whole 10.24 s generation, interleaved in one
process so the ratio is of one run on one machine.

    python studies/turbo_cpu/turbo_cpu.py --model EXPORT --backend openvino --precision bf16 \\
        --out studies/turbo_cpu/results

EXPORT is `tango-rt export --model random:full` (timing needs no trained weights). Both presets run UniPC with
Karras sigmas at 15 steps; the turbo preset adds the plan studies/turbo_cpu/results chose (runtime/presets.py).
After a warm-up of each (the first calls compile and allocate), the two alternate `--rounds` times; each time
is one `Tango.generate` call, end to end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from tango_rt.benchmarks.machine import machine_info
from tango_rt.benchmarks.report import save_study
from tango_rt.runtime.instrument import Recorder, instrument
from tango_rt.runtime.presets import PRESETS
from tango_rt.runtime.tango import Tango

PROMPT = "An audience cheering and clapping"


def measure(tango: Tango, rounds: int) -> dict:
    recorder = Recorder()
    instrument(tango.pipeline, recorder)
    names = ("fast", "turbo")
    for name in names:  # warm-up
        tango.generate(PROMPT, seed=0, **PRESETS[name])
    times: dict[str, list[float]] = {name: [] for name in names}
    calls: dict[str, dict] = {}
    for index in range(rounds):
        for name in names:
            recorder.reset()
            started = time.perf_counter()
            tango.generate(PROMPT, seed=index + 1, **PRESETS[name])
            times[name].append(time.perf_counter() - started)
            calls[name] = {stage: [len(v), round(sum(v), 2)] for stage, v in recorder.calls.items()}
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"seconds": times, "median_s": medians, "speedup": medians["fast"] / medians["turbo"],
            "stage_calls_and_seconds": calls, "presets": {n: PRESETS[n] for n in names}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="studies/turbo_cpu/results")
    args = parser.parse_args(argv)
    machine = machine_info()
    tango = Tango(args.model, backend=args.backend, **({"precision": args.precision} if args.precision else {}))
    result = measure(tango, args.rounds)
    text = (f"One 10.24 s generation, {args.backend} {args.precision or 'fp32'}, on {machine['cpu']} "
            f"({machine['cores']} cores), median of {args.rounds} interleaved rounds: fast preset "
            f"{result['median_s']['fast']:.1f} s, turbo preset {result['median_s']['turbo']:.1f} s "
            f"({result['speedup']:.2f}x).")
    save_study(Path(args.out), __file__, argv, machine, result, "Turbo preset on a CPU", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
