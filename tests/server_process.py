"""A real `tango-rt serve` process on a free loopback port: what the load benchmark and the serving tests drive.

It starts in its own process group (so helpers it leaves behind, such as Ray's node agents, go with it on
`terminate`), waits for the liveness or readiness endpoint while noticing an early exit, stops with SIGTERM (the
server drains) and can sample its RSS every half second.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx

from tango_rt.benchmarks.machine import proc_status_mb


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`tango-rt serve --model MODEL --backend BACKEND --device cpu *args`. With `capture=True` its output is kept
    for `output()` (tests); else it goes to this process's terminal (benchmarks). `prelude`: Python run in the
    server process before the command line (tests inject faults with it)."""

    def __init__(self, *args: str, model: str, backend: str = "torch", capture: bool = True,
                 env: dict[str, str] | None = None, sample_memory: bool = False, prelude: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        start = ["-m", "tango_rt.cli"] if prelude is None else [
            "-c", f"{prelude}\nimport sys\nfrom tango_rt.cli import main\nsys.exit(main(sys.argv[1:]))"]
        command = [sys.executable, *start, "serve", "--model", model, "--backend", backend,
                   "--device", "cpu", "--port", str(self.port), "--log-level", "warning", *args]
        pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT} if capture else {}
        self.process = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, text=True,
                                        start_new_session=True, **pipe)
        self.client = httpx.Client(base_url=self.url, timeout=120)
        self.memory: list[tuple[float, float]] = []  # (seconds since start, RSS MB) when sampling
        if sample_memory:
            threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        start = time.monotonic()
        while self.process.poll() is None:
            rss = proc_status_mb("VmRSS", self.process.pid)
            if rss is not None:
                self.memory.append((time.monotonic() - start, rss))
            time.sleep(0.5)

    def wait_live(self, timeout: float = 60) -> None:
        self._wait("/health/live", timeout)

    def wait_ready(self, timeout: float = 120) -> None:
        self._wait("/health/ready", timeout)

    def _wait(self, path: str, timeout: float) -> None:
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited ({self.process.returncode}): {self.output()}")
            try:
                if self.client.get(path, timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{path} not 200 after {timeout} s")

    def terminate(self, timeout: float = 300) -> int:
        """SIGTERM (the server drains), wait, then kill whatever is left of its process group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.client.close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def output(self) -> str:
        return self.process.stdout.read() if self.process.stdout else ""
