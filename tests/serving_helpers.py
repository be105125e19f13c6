"""The serving tests' server: benchmarks/server_process.ServerProcess on the tiny fixture, in debug mode."""

from __future__ import annotations

from pathlib import Path

from tango_rt.benchmarks.server_process import ServerProcess as _ServerProcess

FIXTURE = Path(__file__).parent / "fixtures" / "tango-tiny"
FAST = {"steps": 2, "duration": 1.0, "scheduler": "ddim"}  # a ~0.1 s request on the tiny model


class ServerProcess(_ServerProcess):
    def __init__(self, *args: str, model: str = str(FIXTURE), backend: str = "torch", prelude: str | None = None):
        super().__init__(*args, model=model, backend=backend, env={"TANGO_RT_DEBUG": "1"}, prelude=prelude)
