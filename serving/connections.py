"""Slow and numerous strangers: what a connection may hold before it is a request.

uvicorn closes an idle keep-alive connection (`timeout_keep_alive`) and answers 503 past `limit_concurrency` once a
request starts, but a connection whose first request's headers never finish is held open indefinitely (tried:
1,500 half-open connections accepted and held), and connections are accepted until the process runs out of file
descriptors. This protocol, uvicorn's h11 protocol subclassed, answers 408 and closes a connection whose first
request's headers have not all arrived within `header_timeout_s` (nginx's client_header_timeout), and answers 503
and closes at once a connection accepted past `max_connections`. A request's body has its own time bound, in the
gate (serving/guard.py), on both front doors.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("tango_rt.serving")


def _answer(status: str, code: str, message: str) -> bytes:
    body = f'{{"error": {{"code": "{code}", "message": "{message}"}}}}'.encode()
    head = (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n")
    return head.encode() + body


BUSY = _answer("503 Service Unavailable", "too_many_connections", "too many open connections; retry later")
SLOW = _answer("408 Request Timeout", "header_timeout", "the request's headers did not arrive in time")


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header deadline and a cap on open connections (pass as Config(http=...))."""

    class GuardedH11Protocol(H11Protocol):
        _headers_due: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(BUSY)
                transport.close()
                return
            self._headers_due = self.loop.call_later(header_timeout_s, self._headers_overdue)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not None:  # the first request's headers are in
                self._cancel()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            super().connection_lost(exc)

        def _cancel(self) -> None:
            if self._headers_due is not None:
                self._headers_due.cancel()
                self._headers_due = None

        def _headers_overdue(self) -> None:
            self._headers_due = None
            if self.cycle is None and not self.transport.is_closing():
                log.info("closing a connection whose request headers did not arrive within %g s", header_timeout_s)
                self.transport.write(SLOW)
                self.transport.close()

    return GuardedH11Protocol
