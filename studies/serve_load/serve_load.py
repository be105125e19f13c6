"""The recorded load test of `tango-rt serve`: batching gain at saturation and behaviour at twice the
sustainable rate, with the server's memory sampled throughout.

    python studies/serve_load/serve_load.py --model tests/fixtures/tango-tiny --out studies/serve_load/results
    python studies/serve_load/serve_load.py --model random:full --steps 2 --requests 4 --skip-overload \\
        --out studies/serve_load/results

1. saturation: a closed loop of `--concurrency` clients against a server with --max-batch 1, then 4 (same
   machine, same run): throughput ratio;
2. overload (max-batch 4 server): an open loop of Poisson arrivals at twice the throughput measured in 1, for
   `--seconds`: status counts (only 200 and 429 expected), lost requests, latency percentiles of the accepted
   ones, and the server's RSS every 0.5 s (flat: a bounded queue holds bounded memory).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tango_rt.benchmarks.loadtest import markdown as load_markdown
from tango_rt.benchmarks.loadtest import run as load_run
from tango_rt.benchmarks.machine import machine_info
from tango_rt.benchmarks.report import save_results

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))  # test infrastructure (the exact answers)
from server_process import ServerProcess


def saturation(model: str, max_batch: int, body: dict, concurrency: int, seconds: float, requests: int | None,
               queue: int, warm: bool) -> dict:
    server = ServerProcess("--max-batch", str(max_batch), "--max-wait-ms", "50", "--max-queue", str(queue), model=model,
                           capture=False, sample_memory=True)
    try:
        server.wait_ready(timeout=900)
        if warm:
            load_run(server.url, body, seconds, concurrency=concurrency, requests=concurrency)  # warm-up round
        result = load_run(server.url, body, seconds, concurrency=concurrency, requests=requests)
        result["peak_rss_mb"] = max((m for _, m in server.memory), default=None)
        return result
    finally:
        server.terminate()


def overload(model: str, body: dict, rate: float, seconds: float, queue: int) -> dict:
    server = ServerProcess("--max-batch", "4", "--max-wait-ms", "50", "--max-queue", str(queue), model=model,
                           capture=False, sample_memory=True)
    try:
        server.wait_ready(timeout=900)
        load_run(server.url, body, seconds, concurrency=4, requests=4)  # warm-up round
        mark = len(server.memory)
        result = load_run(server.url, body, seconds, rate=rate)
        samples = [m for _, m in server.memory[mark:]]
        half = len(samples) // 2
        result["rss_mb"] = {"first_half_max": max(samples[:half], default=None),
                            "second_half_max": max(samples[half:], default=None), "samples": samples}
        return result
    finally:
        server.terminate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--requests", type=int, default=None, help="saturation: stop after this many requests")
    parser.add_argument("--queue", type=int, default=8, help="the servers' --max-queue")
    parser.add_argument("--duration", type=float, default=None, help="clip seconds in the request body")
    parser.add_argument("--no-warm-round", action="store_true",
                        help="skip the warm-up round of requests (the server still warms up at load)")
    parser.add_argument("--skip-overload", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    body = {"prompt": "An audience cheering and clapping", "steps": args.steps, "scheduler": "ddim"}
    if args.duration:
        body["duration"] = args.duration
    result: dict = {"command": "python studies/serve_load/serve_load.py " + " ".join(argv or sys.argv[1:]),
                    "machine": machine_info(), "body": body}
    for batch in (1, 4):
        result[f"saturation_max_batch_{batch}"] = saturation(args.model, batch, body, args.concurrency,
                                                             args.seconds, args.requests, args.queue,
                                                             not args.no_warm_round)
    one, four = result["saturation_max_batch_1"], result["saturation_max_batch_4"]
    result["batching_throughput_ratio"] = four["throughput_ok_per_s"] / one["throughput_ok_per_s"]
    if not args.skip_overload:
        rate = 2 * four["throughput_ok_per_s"]
        result["overload"] = overload(args.model, body, rate, args.seconds, args.queue)
    lines = [f"# Load test of tango-rt serve: {args.model}", "", f"Command: `{result['command']}`",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores. Body: `{json.dumps(body)}`",
             "", "## Saturation (closed loop)", "", "max-batch 1: " + load_markdown(one).replace("\n", "; "), "",
             "max-batch 4: " + load_markdown(four).replace("\n", "; "), "",
             f"Throughput with --max-batch 4 over --max-batch 1: **{result['batching_throughput_ratio']:.2f}x**"]
    if "overload" in result:
        o = result["overload"]
        lines += ["", f"## Overload: Poisson arrivals at twice the sustainable rate ({o['rate']:.3f}/s)", "",
                  load_markdown(o).replace("\n", "; "), "",
                  f"5xx: {o['server_5xx']}, lost: {o['lost']}; server RSS max, first half "
                  f"{o['rss_mb']['first_half_max']:.0f} MB, second half {o['rss_mb']['second_half_max']:.0f} MB"]
    save_results(Path(args.out), result, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
