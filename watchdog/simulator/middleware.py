"""What wraps every API request: headers, simulated `Date`, faults, latency, request log.

Pure ASGI (not BaseHTTPMiddleware) because faults need the raw `send`: a truncated body or a
dropped connection cannot be expressed as a Response object.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watchdog.simulator.faults import LIST_KINDS, Fault
from watchdog.simulator.jsonapi import JSONAPI, number

if TYPE_CHECKING:
    from watchdog.simulator.core import Simulator

WAF_PAGE = (
    b"<html><head><title>Request blocked</title></head>"
    b"<body><h1>Request blocked by WAF</h1><p>Incident 4711</p></body></html>"
)
# What a `trickle` fault sends at a time.
TRICKLE_CHUNK = 20
# The `deep_json` fault's nesting: beyond every JSON decoder's and the interpreter's limit.
DEEP_JSON_LEVELS = 5000


class SimulatorMiddleware:
    def __init__(self, app: ASGIApp, simulator: Simulator) -> None:
        self.app = app
        self.sim = simulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sim"):
            await self.app(scope, receive, send)
            return
        sim = self.sim
        sim.world.tick()
        state: dict[str, Any] = scope.setdefault("state", {})
        method, path = scope["method"], scope["path"]
        entry: dict[str, Any] = {
            "method": method,
            "path": path,
            "query": scope.get("query_string", b"").decode("latin-1"),
            "status": None,
            "principal": None,
            "at": sim.world.now().isoformat(),
            # Real time on this process's monotonic clock (seconds): when the request came
            # in and when its answer was sent, for measuring intervals between requests.
            "received": time.monotonic(),
            "finished": None,
        }
        fired = sim.faults.fire(method, path)
        latency = sim.settings.latency_ms + sum(f.latency_ms for f in fired)
        fault = next((f for f in fired if f.kind != "latency"), None)
        dated = not any(f.kind == "no_date" for f in fired)
        overrides = [(k.lower().encode(), v.encode()) for f in fired for k, v in f.headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
                headers = self._headers(message.get("headers", []), dated=dated)
                names = {name for name, _ in overrides}
                message["headers"] = [
                    (k, v) for k, v in headers if k.lower() not in names
                ] + overrides
            await send(message)

        try:
            if latency > 0:
                await asyncio.sleep(latency / 1000)
            if fault is None or fault.kind == "no_date":
                await self.app(scope, receive, send_with_headers)
            else:
                await self._fault(fault, scope, receive, send_with_headers)
        finally:
            entry["principal"] = state.get("principal_name")
            entry["finished"] = time.monotonic()
            sim.request_log.append(entry)

    def _headers(
        self, raw: list[tuple[bytes, bytes]], *, dated: bool = True
    ) -> list[tuple[bytes, bytes]]:
        """Every response: rate limit, version and app name, and the simulated `Date`."""
        headers = [(k, v) for k, v in raw if k.lower() != b"date"]
        names = {k.lower() for k, _ in headers}
        if b"x-ratelimit-limit" not in names:
            headers.append((b"x-ratelimit-limit", number(self.sim.settings.rate_limit).encode()))
        headers += [
            (b"tfp-api-version", self.sim.settings.api_version.encode()),
            (b"tfp-appname", self.sim.settings.app_name.encode()),
        ]
        if dated:
            now = email.utils.format_datetime(self.sim.world.now(), usegmt=True)
            headers.append((b"date", now.encode()))
        return headers

    async def _fault(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        if fault.kind in LIST_KINDS:
            await self._list_fault(fault, scope, receive, send)
        elif fault.kind == "status":
            phrase = HTTPStatus(fault.status).phrase
            body = json.dumps(
                {"errors": [{"status": str(fault.status), "title": phrase.lower()}]}
            ).encode()
            headers = [(b"content-type", JSONAPI.encode())]
            if fault.status == 429:
                headers.append((b"x-ratelimit-reset", b"0.5"))
            await _send_whole(send, fault.status, headers, body)
        elif fault.kind == "redirect":
            headers = [
                (b"location", b"https://login.example.invalid/"),
                (b"content-type", b"text/html; charset=utf-8"),
            ]
            await _send_whole(send, 302, headers, b"<html><body>Found</body></html>")
        elif fault.kind == "html":
            headers = [(b"content-type", b"text/html; charset=utf-8")]
            await _send_whole(send, 200, headers, WAF_PAGE)
        elif fault.kind == "malformed":
            await _send_whole(send, 200, [(b"content-type", JSONAPI.encode())], b'{"data": [{"id"')
        elif fault.kind == "drop":
            # Headers promise a body that never comes; the server then closes the connection
            # (an ASGI app cannot close a socket before the status line is written).
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"64"), (b"content-type", JSONAPI.encode())],
                }
            )
        else:
            status, headers, body = await _capture(self.app, scope, receive)
            if fault.kind == "content_type":
                headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
                headers.append((b"content-type", b"text/html; charset=utf-8"))
                await _send_whole(send, status, headers, body)
            elif fault.kind == "trickle":
                await _trickle(send, receive, status, headers, body, fault.rate_bps)
            else:  # truncated: full Content-Length, half the bytes, then the server closes
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send(
                    {
                        "type": "http.response.body",
                        "body": body[: len(body) // 2],
                        "more_body": True,
                    }
                )

    async def _list_fault(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        """Lists that lie (faults.LIST_KINDS)."""
        if fault.kind == "deep_json":
            body = b'{"data": ' + b"[" * DEEP_JSON_LEVELS + b"]" * DEEP_JSON_LEVELS + b"}"
            await _send_whole(send, 200, [(b"content-type", JSONAPI.encode())], body)
            return
        if fault.kind == "repeat_page":
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
            first = [(k, "1" if k == "page[number]" else v) for k, v in query]
            await self.app({**scope, "query_string": urlencode(first).encode()}, receive, send)
            return
        status, headers, body = await _capture(self.app, scope, receive)
        try:
            document = json.loads(body)
            pagination = document["meta"]["pagination"]
        except (ValueError, KeyError, TypeError):
            pagination = None  # not a list: answered unchanged
        if isinstance(pagination, dict):
            if fault.kind == "absurd_total":
                pagination |= {"total-pages": 10_000_000, "total-count": 1_000_000_000}
            else:  # endless_pages
                current = pagination.get("current-page")
                pagination.pop("total-pages", None)
                pagination.pop("total-count", None)
                pagination["next-page"] = current + 1 if isinstance(current, int) else 2
            body = json.dumps(document).encode()
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        await _send_whole(send, status, headers, body)


async def _send_whole(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _trickle(
    send: Send,
    receive: Receive,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    rate_bps: float,
) -> None:
    """The whole answer (its Content-Length is the full length), `rate_bps` bytes a second;
    stops when the client goes away."""
    gone = asyncio.create_task(_disconnected(receive))
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for start in range(0, len(body), TRICKLE_CHUNK):
            if gone.done():
                return
            await asyncio.sleep(TRICKLE_CHUNK / rate_bps)
            chunk = body[start : start + TRICKLE_CHUNK]
            more = start + TRICKLE_CHUNK < len(body)
            await send({"type": "http.response.body", "body": chunk, "more_body": more})
    finally:
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _capture(
    app: ASGIApp, scope: Scope, receive: Receive
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Run the app and collect its whole response, to be sent back altered."""
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def collect(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, collect)
    return status, headers, b"".join(chunks)
