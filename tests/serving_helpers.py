"""The serving tests' two ways in: a real `tango-rt serve` process (tests/server_process.py) on the tiny fixture,
for what needs sockets and signals, and the same app in this process over the session's loaded tiny model
(`InProcess`), for everything else: no process to start, no model to load, faults injected with monkeypatch."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from faults import PRELUDE
from server_process import ServerProcess as _ServerProcess

from conftest import FIXTURE

FAST = {"steps": 2, "duration": 1.0, "scheduler": "ddim"}  # a ~0.1 s request on the tiny model
EDIT = {"steps": 2, "scheduler": "ddim"}  # an edit's length is its input's: no duration
GENERATE = "/v1/audio/generate"
KEY = "s3cret"  # the API key the guarded servers are started with
AUTH = {"Authorization": f"Bearer {KEY}"}

# Faults a real server process injects into itself, asked for by the prompt: tests/faults.py (its PRELUDE)
FAULTS = PRELUDE


class ServerProcess(_ServerProcess):
    def __init__(self, *args: str, model: str = str(FIXTURE), backend: str = "torch", prelude: str | None = None,
                 headers: dict | None = None, env: dict | None = None):
        super().__init__(*args, model=model, backend=backend, env={"TANGO_RT_DEBUG": "1", **(env or {})},
                         prelude=prelude)
        if headers:
            self.client.headers.update(headers)


def post(srv: _ServerProcess, body: dict, **kwargs) -> httpx.Response:
    return srv.client.post(GENERATE, json=body, **kwargs)


def post_together(srv: _ServerProcess, bodies: list[dict], **kwargs) -> list[httpx.Response]:
    """Each body posted from its own thread at the same moment, so that the server can batch them; the responses in
    the bodies' order."""
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda body: post(srv, body, **kwargs), bodies))


def server_log(srv: _ServerProcess, response: httpx.Response | None = None) -> str:
    """For an assertion's message (evaluated only when it fails): the unexpected answer and the end of the server's
    log, which is readable once the server has stopped."""
    srv.terminate(timeout=120)
    answer = f"{response.status_code} {response.text[:500]}\n" if response is not None else ""
    return f"{answer}--- server log ---\n{srv.output()[-6000:]}"


def counter(metrics: str, name: str) -> float:
    """A Prometheus sample's value (0 when absent)."""
    return next((float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name)), 0.0)


class InProcess:
    """The FastAPI app of one Service over an already loaded Tango, called through httpx's ASGI transport: the
    server's code from the gate to the worker thread, without a process, a socket or a model load."""

    def __init__(self, tango: Any, **settings: Any):
        from tango_rt.serving.app import create_app
        from tango_rt.serving.service import Service
        from tango_rt.serving.settings import Settings

        self.service = Service(Settings(str(FIXTURE), **settings))
        self.service.tango = tango
        self.service.max_rows = self.service.settings.max_batch
        self.service.batcher = self.service.make_batcher(self.service.max_rows)
        self.service.ready.set()
        self.app = create_app(self.service)

    def send(self, *requests: tuple[str, str, dict]) -> list[httpx.Response]:
        """(method, path, httpx keyword arguments) requests sent at the same moment; the responses in order."""

        async def run() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://tango-rt", timeout=120) as client:
                return list(await asyncio.gather(*(client.request(m, p, **kw) for m, p, kw in requests)))

        return asyncio.run(run())

    def post(self, body: dict | None = None, **kwargs: Any) -> httpx.Response:
        return self.send(("POST", GENERATE, {"json": body, **kwargs} if body is not None else kwargs))[0]

    def together(self, bodies: list[dict], **kwargs: Any) -> list[httpx.Response]:
        return self.send(*[("POST", GENERATE, {"json": body, **kwargs}) for body in bodies])

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.send(("GET", path, kwargs))[0]

    def close(self) -> None:
        self.service.batcher.stop()
