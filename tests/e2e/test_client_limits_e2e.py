"""The TFC client against the real simulator over HTTP: `tfc.timeout` bounds a whole request,
however slowly its body trickles in, and a response without `Date` is not read."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.simulator import ADMIN_TOKEN, SimulatorServer
from watchdog.metrics import Metrics
from watchdog.sources.tfc.client import BadResponseError, TfcClient, TransportError
from watchdog.sources.tfc.source import TfcSource

pytestmark = pytest.mark.e2e

LIST = r"^/api/v2/organizations/demo/workspaces$"


def _client(simulator: SimulatorServer, timeout: float) -> TfcClient:
    # One attempt: this is about one request; GET retries are each bounded the same way.
    return TfcClient(
        address=simulator.url, token=ADMIN_TOKEN, metrics=Metrics(), timeout=timeout, max_attempts=1
    )


async def _read_list(simulator: SimulatorServer, timeout: float) -> float:
    async with _client(simulator, timeout) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TransportError) as caught:
            await client.get(
                "/organizations/demo/workspaces",
                endpoint="GET /organizations/:org/workspaces",
                params={"page[size]": "100"},
            )
        took = loop.time() - started
    assert caught.value.reason == "timeout"
    assert caught.value.request_sent is True
    return took


def test_a_body_trickled_at_200_bytes_a_second_fails_at_the_timeout(simulator: SimulatorServer):
    # The demo organization's list page is tens of KB: minutes at 200 B/s, each chunk of it
    # well within any per-read timeout.
    simulator.inject_fault("trickle", LIST, method="GET", rate_bps=200)
    took = asyncio.run(_read_list(simulator, timeout=1.5))
    assert 1.4 <= took < 3.0, took


async def _observe(simulator: SimulatorServer) -> tuple[bool, str | None]:
    metrics = Metrics()
    async with _client(simulator, timeout=5) as client:
        [observation] = await TfcSource(client, ["demo"], metrics).observe()
        with pytest.raises(BadResponseError):
            await client.get("/organizations/demo/workspaces", endpoint="GET list")
    return observation.complete, observation.error_reason


def test_a_list_answered_without_date_is_an_incomplete_read(simulator: SimulatorServer):
    simulator.inject_fault("no_date", LIST, method="GET")
    complete, reason = asyncio.run(_observe(simulator))
    assert complete is False
    assert reason == "bad_response"
