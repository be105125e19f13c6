"""`tango-rt serve`: uvicorn around the FastAPI app, with a graceful drain on SIGTERM / SIGINT.

Exit statuses, for a supervisor:
- 0: the first SIGTERM / SIGINT marked the service as draining (readiness and new requests answer 503), every
  accepted request got its answer, then uvicorn shut down;
- 128 + signal number (143 for SIGTERM, 130 for SIGINT): a second signal during the drain; the process leaves at
  once, without answering what is still running;
- 70 (EX_SOFTWARE): the worker thread died; for FATAL_GRACE_S the health endpoints and any request answer 503
  (`worker_dead`), then the server shuts down.
uvicorn's own signal bookkeeping (`_captured_signals`, which re-raises the signal after shutdown and would turn a
clean drain into death by signal) is left alone: our handler replaces its handler and only sets `should_exit`,
which its main loop polls.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

import uvicorn

from .app import create_app
from .connections import guarded_protocol
from .service import Service, Settings

log = logging.getLogger("tango_rt.serving")
EXIT_WORKER_DEAD = 70
FATAL_GRACE_S = 2.0  # a dead worker keeps answering 503 this long, so probes and waiting clients hear why


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service
        self.exit_code = 0
        service.on_fatal = self.worker_died

    def handle_exit(self, sig, frame) -> None:
        if self.service.draining:
            log.warning("second signal %d while draining: exiting now", sig)
            logging.shutdown()
            os._exit(128 + sig)
        self.service.draining = True
        log.info("draining: no new requests; finishing %d accepted ones", self.service.in_flight)
        threading.Thread(target=self._exit_when_drained, daemon=True).start()

    def _exit_when_drained(self) -> None:
        while not self.service.idle():
            time.sleep(0.05)
        log.info("drained; shutting down")
        self.should_exit = True

    def worker_died(self) -> None:
        log.critical("the worker thread died (%s); shutting down with status %d", self.service.worker_failure,
                     EXIT_WORKER_DEAD)
        self.exit_code = EXIT_WORKER_DEAD
        self.service.draining = True
        threading.Timer(FATAL_GRACE_S, lambda: setattr(self, "should_exit", True)).start()


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> int:
    """Run until drained (0) or the worker died (70); a second signal leaves from the handler itself."""
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    service = Service(settings)
    app = create_app(service)
    service.start()
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30,
                            http=guarded_protocol(settings.header_timeout_s, settings.max_connections))
    server = DrainingServer(config, service)
    server.run()
    return server.exit_code
