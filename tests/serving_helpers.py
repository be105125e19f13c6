"""The serving tests' server: benchmarks/server_process.ServerProcess on the tiny fixture, in debug mode."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

from server_process import ServerProcess as _ServerProcess

FIXTURE = Path(__file__).parent / "fixtures" / "tango-tiny"
FAST = {"steps": 2, "duration": 1.0, "scheduler": "ddim"}  # a ~0.1 s request on the tiny model


class ServerProcess(_ServerProcess):
    def __init__(self, *args: str, model: str = str(FIXTURE), backend: str = "torch", prelude: str | None = None):
        super().__init__(*args, model=model, backend=backend, env={"TANGO_RT_DEBUG": "1"}, prelude=prelude)


def post(srv: _ServerProcess, body: dict, **kwargs) -> httpx.Response:
    return srv.client.post("/v1/audio/generate", json=body, **kwargs)


def post_together(srv: _ServerProcess, bodies: list[dict]) -> list[httpx.Response]:
    """Each body posted from its own thread at the same moment, so that the server can batch them; the responses in
    the bodies' order."""
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda body: post(srv, body), bodies))


def server_log(srv: _ServerProcess, response: httpx.Response | None = None) -> str:
    """For an assertion's message (evaluated only when it fails): the unexpected answer and the end of the server's
    log, which is readable once the server has stopped."""
    srv.terminate(timeout=120)
    answer = f"{response.status_code} {response.text[:500]}\n" if response is not None else ""
    return f"{answer}--- server log ---\n{srv.output()[-6000:]}"
