"""The ops HTTP server: /metrics, /livez (/healthz), /readyz, /locks.

Runs in the daemon's event loop (uvicorn), so handlers read the cycle's state without locks:
the cycle publishes synchronously between awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import time
from collections.abc import Callable, Generator
from datetime import timedelta
from typing import Any

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from watchdog.policy import parse_listen
from watchdog.reporting import Reporter

# How long past 3 x `interval` a cycle may take before /livez calls the scheduler stuck.
# Cycles take seconds (benchmarks/RESULTS.md: 50,000 workspaces in under a minute) and every
# request is bounded by `tfc.timeout`, so only a scheduler that stopped (or a hung await)
# gets this far.
LIVENESS_SLACK = timedelta(minutes=5)


def build_app(*, reporter: Reporter, interval: Callable[[], timedelta]) -> Starlette:
    """Everything served comes from the report stage (`reporter`: health, the last report,
    the /metrics exposition). `interval` is a callable: a config reload can change it.

    /livez: the process and its scheduler are alive (a cycle ended, however it went, within
    3 x interval + LIVENESS_SLACK). An API outage never fails it: restarting the pod would
    not bring the API back, and would drop the per-lock series and their alerts. /healthz is
    the same check under its older name. /readyz: the API is being read (a cycle succeeded
    within 3 x interval, and the token was not refused since)."""

    async def livez(_: Request) -> Response:
        state = reporter.health
        allowed = 3 * interval().total_seconds() + LIVENESS_SLACK.total_seconds()
        ended = state.last_cycle_end_monotonic
        reference = state.started_monotonic if ended is None else ended
        age = time.monotonic() - reference
        if age > allowed:
            what = "no cycle has ended since start" if ended is None else "no cycle has ended"
            return PlainTextResponse(
                f"not alive: {what} for {int(age)}s (limit 3 x interval + "
                f"{int(LIVENESS_SLACK.total_seconds())}s = {int(allowed)}s): "
                "the scheduler is stuck\n",
                status_code=503,
            )
        return PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        state = reporter.health
        allowed = 3 * interval().total_seconds()
        if not state.ready or state.last_success_monotonic is None:
            return PlainTextResponse(
                f"not ready: {state.last_error or 'no successful cycle yet'}\n",
                status_code=503,
            )
        age = time.monotonic() - state.last_success_monotonic
        if age > allowed:
            return PlainTextResponse(
                f"not ready: no successful cycle for {int(age)}s (limit 3 x interval = "
                f"{int(allowed)}s); last error: {state.last_error or 'none'}\n",
                status_code=503,
            )
        return PlainTextResponse("ready\n")

    async def locks(_: Request) -> Response:
        report = reporter.last_report
        if report is None:
            return JSONResponse({"error": "no cycle has finished yet"}, status_code=503)
        return JSONResponse(report.to_json())

    app = Starlette(
        routes=[
            Route("/livez", livez),
            # The older name of /livez, kept for probes and scripts that use it.
            Route("/healthz", livez),
            Route("/readyz", readyz),
            Route("/locks", locks),
            # An ASGI app as a Route (not a Mount), so /metrics answers without a redirect;
            # GET and HEAD only (anything else 405): it reads, never changes anything.
            Route("/metrics", _AsgiEndpoint(reporter.exposition), methods=["GET", "HEAD"]),
        ]
    )
    return app


class _AsgiEndpoint:
    """Starlette treats a plain function as a request handler; an object is an ASGI app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class OpsServer(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT/SIGHUP so that
    it can finish the current cycle before the server goes away."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


# The ops server is reached by a kubelet, a Prometheus and the odd operator: a few
# connections at a time. Anything beyond that is an accident or an attack, and must not take
# the process's file descriptors, which the cycle needs for its own API connections.
MAX_CONNECTIONS = 64
# A client has this long from connecting (or from the end of its previous response) to send
# complete request headers; trickling bytes does not extend it.
HEADER_TIMEOUT_SECONDS = 10.0
# Kernel queue of connections not yet accepted. asyncio accepts up to `backlog` connections
# per wake-up (and logs each failed accept), so a short queue also bounds those bursts.
BACKLOG = 64
# How long the server waits on shutdown for requests in progress; the daemon's own stop
# grace (daemon.STOP_GRACE) comes before it, and both stay below the pod's grace period.
SHUTDOWN_TIMEOUT_SECONDS = 3
# At most one line per message per this many seconds from the event loop and the HTTP
# server (a failing accept() is logged once per attempt, thousands of times a second).
LOG_INTERVAL_SECONDS = 60.0


def bind_listener(listen: str) -> socket.socket:
    """The ops server's listening socket, bound before anything else starts.

    uvicorn binds inside `serve()` and calls `sys.exit()` when the port is taken, after the
    first cycle has already started; binding here first lets the daemon say so in one line
    and exit 1. Same socket options as uvicorn's own `Config.bind_socket`. Raises OSError.
    """
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def connection_limit() -> int:
    """MAX_CONNECTIONS, or a quarter of the open-file limit when that is lower: the rest of
    the descriptors stay for the cycle."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(4, min(MAX_CONNECTIONS, soft // 4))


def make_server(app: Starlette, listen: str) -> OpsServer:
    host, port = parse_listen(listen)
    limit_log_rate()
    protocol = type(
        "OpsHttpProtocol",
        (GuardedH11Protocol,),
        {"max_connections": connection_limit(), "header_timeout": HEADER_TIMEOUT_SECONDS},
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        http=protocol,
        backlog=BACKLOG,
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_SECONDS,
    )
    return OpsServer(config)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap.

    Written here because uvicorn (0.2x-0.5x) has neither for a client that connects and
    never sends a request: its keep-alive timer starts only after a first response and any
    byte cancels it, and `limit_concurrency` answers 503 only once a request arrives, after
    the connection has taken a file descriptor. Idle connections by the thousand then use up
    the descriptors, accept() fails in a loop and /healthz becomes unreachable.

    - Header deadline: `header_timeout` seconds from connecting, and again from the end of
      each response, to deliver complete request headers; else the connection is closed.
    - Cap: past `max_connections` open connections, the one that has waited longest for its
      request headers is closed (an idle or trickling client), so a new probe still gets in;
      when every connection is busy with a request, the new one is closed instead.
    """

    max_connections: int = MAX_CONNECTIONS
    header_timeout: float = HEADER_TIMEOUT_SECONDS

    _waiting_since: float = 0.0
    _deadline: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_deadline()
        if len(self.connections) > self.max_connections:
            self._shed()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_deadline()

    def waiting_for_request(self) -> bool:
        """No request is being handled and the next one's headers are not complete."""
        return (
            not self.transport.is_closing()
            and self.conn.their_state is h11.IDLE
            and (self.cycle is None or self.cycle.response_complete)
        )

    def _arm_deadline(self) -> None:
        self._cancel_deadline()
        self._waiting_since = time.monotonic()
        self._deadline = self.loop.call_later(self.header_timeout, self._deadline_passed)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.waiting_for_request():
            self.transport.close()

    def _shed(self) -> None:
        waiting = [
            c
            for c in self.connections
            if isinstance(c, GuardedH11Protocol) and c is not self and c.waiting_for_request()
        ]
        victim = min(waiting, key=lambda c: c._waiting_since, default=self)
        logging.getLogger("uvicorn.error").warning(
            "ops server at its connection limit (%d): closing the connection waiting longest "
            "for its request; restrict who can reach `listen`",
            self.max_connections,
        )
        victim.transport.close()


class RateLimitedLog(logging.Filter):
    """Lets one record per message through per `interval` seconds and counts the rest; the
    next line that gets through says how many were dropped. Messages are told apart by their
    logger and first line (asyncio's accept() error differs only in its traceback)."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval
        self.suppressed_total = 0
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{str(record.msg).partition(chr(10))[0]}"
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            self.suppressed_total += 1
            return False
        if len(self._last) > 1000:  # distinct messages are few; never let this grow unbounded
            self._last.clear()
        self._last[key] = now
        dropped = self._suppressed.pop(key, 0)
        if dropped:
            record.msg = (
                f"{record.getMessage()}\n({dropped} more like this in the last "
                f"{int(self.interval)}s were not logged)"
            )
            record.args = None
        return True


# The loggers whose lines an outside client can cause at will.
_RATE_LIMITED_LOGGERS = ("asyncio", "uvicorn.error")


def limit_log_rate(interval: float = LOG_INTERVAL_SECONDS) -> RateLimitedLog:
    """Install (once) the rate limit on the event loop's and the HTTP server's loggers."""
    for name in _RATE_LIMITED_LOGGERS:
        for existing in logging.getLogger(name).filters:
            if isinstance(existing, RateLimitedLog):
                return existing
    limiter = RateLimitedLog(interval)
    for name in _RATE_LIMITED_LOGGERS:
        logging.getLogger(name).addFilter(limiter)
    return limiter
