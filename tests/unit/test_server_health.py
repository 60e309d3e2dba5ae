"""The ops server's probes: /livez (and /healthz) follow the scheduler, /readyz the API.

An API outage makes every cycle end incomplete: the process is alive (/livez 200, so the pod
is not restarted and its per-lock series and alerts stay) and not ready (/readyz 503). Only
a scheduler that stopped ending cycles fails /livez.
"""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest

from watchdog.metrics import Metrics
from watchdog.reporting import Health, Reporter
from watchdog.server import LIVENESS_SLACK, build_app

INTERVAL = timedelta(seconds=60)
LIVE_LIMIT = 3 * INTERVAL.total_seconds() + LIVENESS_SLACK.total_seconds()


async def get(health: Health, path: str) -> httpx.Response:
    reporter = Reporter(Metrics())
    reporter.health = health
    app = build_app(reporter=reporter, interval=lambda: INTERVAL)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as client:
        return await client.get(path)


def ago(seconds: float) -> float:
    return time.monotonic() - seconds


def outage(minutes: float) -> Health:
    """Cycles keep ending every interval, none complete for `minutes`."""
    return Health(
        started_monotonic=ago(3600),
        last_success_monotonic=ago(minutes * 60),
        last_cycle_end_monotonic=ago(5),
        ready=True,
        last_error="demo: connection refused",
    )


@pytest.mark.parametrize("path", ["/livez", "/healthz"])
@pytest.mark.parametrize("minutes", [1, 4, 30, 600])
async def test_an_api_outage_keeps_the_process_alive(path: str, minutes: float) -> None:
    response = await get(outage(minutes), path)
    assert (response.status_code, response.text) == (200, "ok\n")


@pytest.mark.parametrize("minutes", [4, 30, 600])
async def test_an_api_outage_past_three_intervals_makes_it_not_ready(minutes: float) -> None:
    response = await get(outage(minutes), "/readyz")
    assert response.status_code == 503
    assert "no successful cycle for" in response.text
    assert "demo: connection refused" in response.text


async def test_ready_while_cycles_succeed() -> None:
    health = Health(last_success_monotonic=ago(10), last_cycle_end_monotonic=ago(10), ready=True)
    assert (await get(health, "/readyz")).status_code == 200


async def test_not_ready_before_the_first_successful_cycle_and_after_a_401() -> None:
    assert (await get(Health(), "/readyz")).status_code == 503
    refused = Health(
        last_success_monotonic=ago(10),
        last_cycle_end_monotonic=ago(1),
        ready=False,
        last_error="demo: 401 unauthorized",
    )
    response = await get(refused, "/readyz")
    assert response.status_code == 503 and "401" in response.text
    # The process itself is fine: a bad token is not cured by a restart.
    assert (await get(refused, "/livez")).status_code == 200


@pytest.mark.parametrize("path", ["/livez", "/healthz"])
async def test_a_scheduler_that_stopped_ending_cycles_is_not_alive(path: str) -> None:
    stuck = Health(
        started_monotonic=ago(7200),
        last_success_monotonic=ago(LIVE_LIMIT + 30),
        last_cycle_end_monotonic=ago(LIVE_LIMIT + 30),
        ready=True,
    )
    response = await get(stuck, path)
    assert response.status_code == 503
    assert "no cycle has ended for" in response.text and "scheduler is stuck" in response.text


async def test_a_first_cycle_gets_three_intervals_plus_the_slack() -> None:
    assert (await get(Health(started_monotonic=ago(LIVE_LIMIT - 30)), "/livez")).status_code == 200
    response = await get(Health(started_monotonic=ago(LIVE_LIMIT + 30)), "/livez")
    assert response.status_code == 503
    assert "no cycle has ended since start" in response.text
