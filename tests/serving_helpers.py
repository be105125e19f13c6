"""A real `tango-rt serve` process on a free loopback port, for the serving tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

FIXTURE = Path(__file__).parent / "fixtures" / "tango-tiny"
FAST = {"steps": 2, "duration": 1.0, "scheduler": "ddim"}  # a ~0.1 s request on the tiny model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(self, *args: str, model: str = str(FIXTURE), backend: str = "torch"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "tango_rt.cli", "serve", "--model", model, "--backend", backend,
                   "--device", "cpu", "--port", str(self.port), "--log-level", "warning", *args]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TANGO_RT_DEBUG": "1"}
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)  # its own process group: see terminate
        self.client = httpx.Client(base_url=self.url, timeout=120)

    def wait_live(self, timeout: float = 60) -> None:
        self._wait("/health/live", timeout)

    def wait_ready(self, timeout: float = 120) -> None:
        self._wait("/health/ready", timeout)

    def _wait(self, path: str, timeout: float) -> None:
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited ({self.process.returncode}): {self.process.stdout.read()}")
            try:
                if self.client.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{path} not 200 after {timeout} s")

    def terminate(self, timeout: float = 120) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.client.close()
            with contextlib.suppress(ProcessLookupError):  # helpers left behind (Ray's node agents) go with it
                os.killpg(self.process.pid, signal.SIGKILL)

    def output(self) -> str:
        return self.process.stdout.read() if self.process.stdout else ""
