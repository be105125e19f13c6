"""`tango-rt serve`: uvicorn around the FastAPI app, with a graceful drain on SIGTERM / SIGINT.

The first signal marks the service as draining (readiness and new requests answer 503), waits until every
accepted request has its answer, then lets uvicorn shut down; a second signal exits at once.
"""

from __future__ import annotations

import logging
import threading
import time

import uvicorn

from .app import create_app
from .service import Service, Settings

log = logging.getLogger("tango_rt.serving")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig, frame) -> None:
        if self.service.draining:
            return super().handle_exit(sig, frame)
        self.service.draining = True
        log.info("draining: no new requests; finishing %d accepted ones", self.service.in_flight)
        threading.Thread(target=self._exit_when_drained, args=(sig, frame), daemon=True).start()

    def _exit_when_drained(self, sig, frame) -> None:
        while not self.service.idle():
            time.sleep(0.05)
        log.info("drained; shutting down")
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # a completed drain is a clean exit (status 0), not death by signal


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = Service(settings)
    app = create_app(service)
    service.start()
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30)
    DrainingServer(config, service).run()
