"""The ops HTTP server: /metrics, /livez (/healthz), /readyz, /locks (DESIGN.md "Layout").

Runs in the daemon's event loop (uvicorn), so handlers read the cycle's state without locks:
the cycle publishes synchronously between awaits.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator
from datetime import timedelta

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from watchdog.cycle import Health
from watchdog.exposition import MetricsExposition
from watchdog.metrics import Metrics
from watchdog.report import CycleReport

# How long past 3 x `interval` a cycle may take before /livez calls the scheduler stuck.
# Cycles take seconds (benchmarks/RESULTS.md: 50,000 workspaces in under a minute) and every
# request is bounded by `tfc.timeout`, so only a scheduler that stopped (or a hung await)
# gets this far.
LIVENESS_SLACK = timedelta(minutes=5)


def build_app(
    *,
    metrics: Metrics,
    health: Callable[[], Health],
    interval: Callable[[], timedelta],
    last_report: Callable[[], CycleReport | None],
) -> Starlette:
    """Callables rather than values: a config reload can change the interval, and each cycle
    replaces the report.

    /livez: the process and its scheduler are alive (a cycle ended, however it went, within
    3 x interval + LIVENESS_SLACK). An API outage never fails it: restarting the pod would
    not bring the API back, and would drop the per-lock series and their alerts. /healthz is
    the same check under its older name. /readyz: the API is being read (a cycle succeeded
    within 3 x interval, and the token was not refused since)."""

    async def livez(_: Request) -> Response:
        state = health()
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
        state = health()
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
        report = last_report()
        if report is None:
            return JSONResponse({"error": "no cycle has finished yet"}, status_code=503)
        return JSONResponse(report.to_json())

    exposition = MetricsExposition(metrics)
    app = Starlette(
        routes=[
            Route("/livez", livez),
            # The older name of /livez, kept for probes and scripts that use it.
            Route("/healthz", livez),
            Route("/readyz", readyz),
            Route("/locks", locks),
            # An ASGI app as a Route (not a Mount), so /metrics answers without a redirect.
            Route("/metrics", _AsgiEndpoint(exposition)),
        ]
    )
    # The daemon calls app.state.exposition.prerender() after each cycle.
    app.state.exposition = exposition
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


def make_server(app: Starlette, listen: str) -> OpsServer:
    host, _, port = listen.rpartition(":")
    config = uvicorn.Config(
        app,
        host=host.strip("[]") or "0.0.0.0",
        port=int(port),
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    return OpsServer(config)
