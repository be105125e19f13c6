"""The playground page (GET / and /ui/*): a static page that calls the server's own API from the browser.

The page holds no secret and runs nothing on the server, so the gate lets it through without the key
(serving/guard.py: is_open); the page asks the user for the key and sends it with every API call, which
the gate checks as it checks any client's. Only the files listed here are served (no directory walk), and only
while the server's `ui` setting is on (`serve --no-ui` turns it off: 404). Not in the OpenAPI document: it is a
page for people, not part of the API.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response

from .service import Service

STATIC = Path(__file__).with_name("static")
FILES = {"index.html": "text/html; charset=utf-8", "playground.js": "text/javascript; charset=utf-8",
         "playground.css": "text/css; charset=utf-8"}


def add_page(app: FastAPI, service: Callable[[], Service]) -> None:
    """GET / (the page) and GET /ui/{name} (its script and style)."""

    def serve_file(name: str) -> Response:
        if not service().settings.ui or name not in FILES:
            return JSONResponse({"error": {"code": "not_found", "message": "no such page"}}, status_code=404)
        # no-cache: the browser revalidates, so a server upgrade never runs an old script against a new API
        return FileResponse(STATIC / name, media_type=FILES[name], headers={"Cache-Control": "no-cache"})

    async def page() -> Response:
        return serve_file("index.html")

    async def asset(name: str) -> Response:
        return serve_file(name)

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/{name}", asset, methods=["GET"], include_in_schema=False)
