"""Pure ASGI middleware: request ids, access logs and metrics; API keys; the request body limit.

Pure ASGI (not ``BaseHTTPMiddleware``) keeps the per-request overhead to a few function calls.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from collections.abc import Sequence

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_response
from service.logs import request_id_var
from service.metrics import Metrics

access_log = logging.getLogger("service.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_ROUTINE_PATHS = OPEN_PATHS | {"/metrics"}


class RequestContext:
    """Echo a valid ``X-Request-ID`` (or make one), and log and count every request by its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"  # template: bounded cardinality
            self.metrics.request(route, scope["method"], status, seconds)
            # Probe and scrape traffic is routine: it goes to DEBUG unless it fails.
            quiet = scope["path"] in _ROUTINE_PATHS and status < 400
            access_log.log(
                logging.DEBUG if quiet else logging.INFO,
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )
            request_id_var.reset(token)


class ApiKeyGuard:
    """With keys configured, every path but the health probes needs a valid ``X-API-Key`` (401 otherwise)."""

    def __init__(self, app: ASGIApp, keys: Sequence[str]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]

    def _authorised(self, scope: Scope) -> bool:
        given = Headers(scope=scope).get("x-api-key", "").encode()
        # Compare with every key, in constant time, so timing tells neither the key nor which one matched.
        matches = [hmac.compare_digest(given, key) for key in self.keys]
        return any(matches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in OPEN_PATHS or self._authorised(scope):
            await self.app(scope, receive, send)
            return
        missing = "x-api-key" not in Headers(scope=scope)
        message = "the X-API-Key header is missing" if missing else "the X-API-Key is not valid"
        response = error_response(401, "unauthorized", message, headers={"WWW-Authenticate": "ApiKey"})
        await response(scope, receive, send)


class BodyLimit:
    """413 for a request body over ``max_bytes``: from Content-Length before reading, or while streaming.

    A chunked body that crosses the limit is cut off (the app sees a disconnect) and whatever the app then
    answers is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> ASGIApp:
        return error_response(413, "image_too_large", f"the request body is over the {self.max_bytes}-byte limit")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        received = 0
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not exceeded:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._too_large()(scope, receive, send)

        await self.app(scope, limited_receive, guarded_send)
