"""The recorded load test of `tango-rt serve`: batching gain at saturation and behaviour at twice the
sustainable rate, with the server's memory sampled throughout.

    python -m tango_rt.benchmarks.serve_load --model tests/fixtures/tango-tiny --out benchmarks/results/serve_tiny
    python -m tango_rt.benchmarks.serve_load --model random:full --steps 2 --requests 4 --skip-overload \\
        --out benchmarks/results/serve_full

1. saturation: a closed loop of `--concurrency` clients against a server with --max-batch 1, then 4 (same
   machine, same run): throughput ratio;
2. overload (max-batch 4 server): an open loop of Poisson arrivals at twice the throughput measured in 1, for
   `--seconds`: status counts (only 200 and 429 expected), lost requests, latency percentiles of the accepted
   ones, and the server's RSS every 0.5 s (flat: a bounded queue holds bounded memory).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from .loadtest import markdown as load_markdown
from .loadtest import run as load_run
from .machine import machine_info
from .report import save_results


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Server:
    def __init__(self, model: str, *args: str):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "tango_rt.cli", "serve", "--model", model, "--device", "cpu", "--port",
                   str(self.port), "--log-level", "warning", *args]
        self.process = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        self.memory: list[tuple[float, float]] = []
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        start = time.monotonic()
        while self._sampling and self.process.poll() is None:
            rss = _rss_mb(self.process.pid)
            if rss is not None:
                self.memory.append((time.monotonic() - start, rss))
            time.sleep(0.5)

    def wait_ready(self, timeout: float = 900) -> None:
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError("server not ready")

    def stop(self) -> None:
        self._sampling = False
        self.process.terminate()
        self.process.wait(300)


def saturation(model: str, max_batch: int, body: dict, concurrency: int, seconds: float, requests: int | None,
               queue: int, warm: bool) -> dict:
    server = Server(model, "--max-batch", str(max_batch), "--max-wait-ms", "50", "--max-queue", str(queue))
    try:
        server.wait_ready()
        if warm:
            load_run(server.url, body, seconds, concurrency=concurrency, requests=concurrency)  # warm-up round
        result = load_run(server.url, body, seconds, concurrency=concurrency, requests=requests)
        result["peak_rss_mb"] = max((m for _, m in server.memory), default=None)
        return result
    finally:
        server.stop()


def overload(model: str, body: dict, rate: float, seconds: float, queue: int) -> dict:
    server = Server(model, "--max-batch", "4", "--max-wait-ms", "50", "--max-queue", str(queue))
    try:
        server.wait_ready()
        load_run(server.url, body, seconds, concurrency=4, requests=4)  # warm-up round
        mark = len(server.memory)
        result = load_run(server.url, body, seconds, rate=rate)
        samples = [m for _, m in server.memory[mark:]]
        half = len(samples) // 2
        result["rss_mb"] = {"first_half_max": max(samples[:half], default=None),
                            "second_half_max": max(samples[half:], default=None), "samples": samples}
        return result
    finally:
        server.stop()


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
    result: dict = {"command": "python -m tango_rt.benchmarks.serve_load " + " ".join(argv or sys.argv[1:]),
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
