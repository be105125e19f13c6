"""The front gate of both front doors: the API key and the body size, checked before any parsing or work.

A pure ASGI middleware, so it runs before FastAPI reads or validates a body: a request without the key gets its
401 without the server having parsed a byte of JSON, and a body past the cap gets a 413 as soon as its
Content-Length (or, when chunked, its running length) says so. The cap depends on the media type: JSON and
multipart bodies may carry one audio file (Settings.body_cap), anything else only the small request. What needs
no key: the health probes (load balancers and supervisors send none) and the playground page's static files
(serving/playground.py: the page asks for the key and sends it with its API calls). Everything else, /metrics,
/v1/models (model id, limits) and the OpenAPI pages included, needs the key when one is set.

Two bounds for strangers who send slowly or too much:
- a body that stops arriving: each of its chunks must come within `body_timeout_s` (nginx's client_body_timeout),
  else 408 and the connection closes;
- an early answer (401, 413) to a client that writes its whole body before reading (Python's urllib, requests):
  closing with the body unread makes the kernel reset the connection, and such a client sees a reset, not the
  status. As nginx's lingering close does, the rest of the body is read and thrown away first, at most
  LINGER_BYTES within LINGER_S (nothing is kept), unless the client asked `Expect: 100-continue` (it waits for
  the answer before sending the body, so there is nothing to drain).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

OPEN_PATHS = frozenset({"/health/live", "/health/ready", "/"})  # reachable without the key
OPEN_PREFIXES = ("/ui/",)  # the playground's script and style, equally open
LINGER_BYTES = 16 * 2**20  # what an early answer reads and discards of the body at most, so the client hears it
LINGER_S = 5.0

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def key_matches(headers: dict[str, str], key: str) -> bool:
    """X-API-Key: <key>, or Authorization: Bearer <key> (the scheme is required), compared in constant time."""
    given = headers.get("x-api-key")
    if given is None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        given = token if scheme.lower() == "bearer" else ""
    return secrets.compare_digest(given.encode(), key.encode())


class BodyTimeout(Exception):
    """A chunk of the body did not arrive within the body timeout."""


async def _refuse(send: Send, status: int, code: str, message: str, extra: list | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


Limits = Callable[[], tuple[str | None, Callable[[str], int], float]]  # (key, body cap by media type, body timeout)


def is_open(path: str) -> bool:
    """Whether a path is reachable without the key."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class Gate:
    """ASGI middleware: `limits()` gives (api_key or None, body cap by content type, body timeout in seconds) for
    the current service."""

    def __init__(self, app: Callable, limits: Limits):
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        key, body_cap, body_timeout = self.limits()
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        max_body = body_cap(headers.get("content-type", ""))
        drain = headers.get("expect", "").lower() != "100-continue"
        if key and not is_open(scope["path"]) and not key_matches(headers, key):
            if drain:
                await _linger(receive)
            return await _refuse(send, 401, "unauthorized", "missing or wrong API key (X-API-Key: KEY or "
                                 "Authorization: Bearer KEY)", [(b"www-authenticate", b"Bearer")])
        too_big = f"request body over {max_body} bytes"
        try:
            declared = int(headers.get("content-length", "0"))
        except ValueError:
            return await _refuse(send, 400, "bad_request", "Content-Length is not a number")
        if declared > max_body:
            if drain and declared <= LINGER_BYTES:
                await _linger(receive)
            return await _refuse(send, 413, "body_too_large", too_big)
        try:
            body = await _read_body(receive, max_body, body_timeout)
        except BodyTimeout:
            return await _refuse(send, 408, "body_timeout", f"the request body stopped arriving for over "
                                 f"{body_timeout:g} s", [(b"connection", b"close")])
        if body is None:
            if drain:
                await _linger(receive)
            return await _refuse(send, 413, "body_too_large", too_big)
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive, limit: int, timeout: float) -> bytes | None:
    """The whole request body, or None as soon as it passes `limit` bytes; BodyTimeout when a chunk takes longer
    than `timeout` seconds to come."""
    chunks, size = [], 0
    while True:
        try:
            message = await asyncio.wait_for(receive(), timeout)
        except asyncio.TimeoutError:
            raise BodyTimeout from None
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away; the app will see it on its own receive
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _linger(receive: Receive) -> None:
    """Read and discard what is left of a refused request's body, at most LINGER_BYTES within LINGER_S."""
    loop = asyncio.get_running_loop()
    until, size = loop.time() + LINGER_S, 0
    while size <= LINGER_BYTES:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, until - loop.time()))
        except asyncio.TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        size += len(message.get("body", b""))


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the buffered body over once, then passes through (disconnect notices)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
