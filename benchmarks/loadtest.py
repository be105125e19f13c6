"""`tango-rt loadtest URL`: drive a running tango-rt server and report what its clients saw.

Open loop (`--rate R`): requests start at Poisson arrival times whatever the server does, the way independent
users arrive; this is what shows overload behaviour (429s, queue-bounded latency). Closed loop
(`--concurrency C`): C clients each send the next request when the previous one is answered; this measures
sustainable throughput. Both stop sending after `--duration` seconds (or `--requests`), then wait for every
outstanding answer: a request that gets no HTTP answer is counted as lost. Reports throughput, latency
percentiles of successful requests, status counts and the server's queue wait (from its Server-Timing header).
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import httpx

from .report import save_results
from .stats import summarize


class Load:
    """Shared tallies of one run (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: dict[str, int] = {}
        self.latencies: list[float] = []
        self.queue_ms: list[float] = []
        self.sent = 0

    def record(self, status: str, latency: float | None = None, queue_ms: float | None = None) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if latency is not None:
                self.latencies.append(latency)
            if queue_ms is not None:
                self.queue_ms.append(queue_ms)


def _server_timing(header: str, name: str) -> float | None:
    for part in header.split(","):
        key, _, value = part.strip().partition(";dur=")
        if key == name:
            return float(value)
    return None


def _one(client: httpx.Client, body: dict, load: Load, headers: dict) -> None:
    started = time.perf_counter()
    try:
        response = client.post("/v1/audio/generate", json=body, headers=headers)
    except httpx.TimeoutException:
        load.record("timeout")
        return
    except httpx.TransportError as exc:
        load.record(f"transport:{type(exc).__name__}")
        return
    ok = response.status_code == 200
    queue = _server_timing(response.headers.get("server-timing", ""), "queue") if ok else None
    load.record(str(response.status_code), time.perf_counter() - started if ok else None, queue)


def run(url: str, body: dict, duration: float, rate: float | None = None, concurrency: int = 4,
        requests: int | None = None, headers: dict | None = None, timeout: float = 900.0, seed: int = 0) -> dict:
    load, headers = Load(), headers or {}
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    client = httpx.Client(base_url=url, timeout=timeout, limits=limits)
    started = time.perf_counter()
    stop_at = started + duration
    threads: list[threading.Thread] = []

    def budget() -> bool:
        with load.lock:
            if time.perf_counter() >= stop_at or (requests is not None and load.sent >= requests):
                return False
            load.sent += 1
            return True

    if rate:
        arrivals = random.Random(seed)
        next_at = started
        while budget():
            next_at += arrivals.expovariate(rate)
            time.sleep(max(0.0, next_at - time.perf_counter()))
            thread = threading.Thread(target=_one, args=(client, body, load, headers))
            thread.start()
            threads.append(thread)
    else:
        def worker() -> None:
            while budget():
                _one(client, body, load, headers)

        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    client.close()
    answered = sum(v for k, v in load.statuses.items() if k.isdigit())
    ok = load.statuses.get("200", 0)
    return {
        "mode": "open" if rate else "closed", "rate": rate, "concurrency": None if rate else concurrency,
        "duration_s": elapsed, "sent": load.sent, "answered": answered, "lost": load.sent - answered,
        "statuses": dict(sorted(load.statuses.items())), "throughput_ok_per_s": ok / elapsed,
        "latency_s": summarize(load.latencies), "p99_s": _percentile(load.latencies, 99),
        "p50_s": _percentile(load.latencies, 50), "queue_wait_ms": summarize(load.queue_ms),
        "server_5xx": sum(v for k, v in load.statuses.items() if k.startswith("5")),
    }


def _percentile(values: list[float], q: float) -> float | None:
    from .stats import percentile

    return percentile(values, q) if values else None


def markdown(result: dict) -> str:
    lat = result["latency_s"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    load = f"rate {result['rate']}/s" if result["rate"] else f"concurrency {result['concurrency']}"
    return "\n".join([
        f"mode {result['mode']} ({load}), {result['duration_s']:.1f} s: sent {result['sent']}, "
        f"answered {result['answered']}, lost {result['lost']}",
        f"statuses {result['statuses']}; throughput {result['throughput_ok_per_s']:.3f} ok/s",
        f"latency of 200s: p50 {fmt(result['p50_s'])} s, p95 {fmt(lat.get('p95'))} s, p99 {fmt(result['p99_s'])} s, "
        f"max {fmt(lat.get('max'))} s; server queue wait median "
        f"{fmt(result['queue_wait_ms'].get('median'))} ms",
    ])


def main(args) -> int:
    """Entry point of `tango-rt loadtest` (arguments parsed by tango_rt.cli)."""
    from ..runtime.errors import InputError

    try:
        body = json.loads(args.body)
    except json.JSONDecodeError as exc:
        raise InputError(f"--body is not JSON: {exc}") from None
    headers = {}
    if args.api_key_file:
        headers["X-API-Key"] = Path(args.api_key_file).read_text().strip()
    result = run(args.url, body, args.duration, args.rate, args.concurrency, args.requests, headers, args.timeout)
    result["body"] = body
    text = markdown(result)
    print(text)
    if args.out:
        save_results(Path(args.out), result, f"# Load test\n\n{text}\n")
    return 0
