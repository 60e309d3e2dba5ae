"""TfcClient.set_token: a rotated token is sent from the next request on, and neither the
new nor the old token can leak through an error text."""

from __future__ import annotations

import httpx
import pytest
import respx

from tests.support.tfcapi import BASE, TOKEN
from tests.unit.test_tfc_client import FakeTime, doc, errors, make_client
from watchdog.metrics import Metrics
from watchdog.sources.tfc.client import TransportError, UnauthorizedError

NEW_TOKEN = "nEwToKeN.atlasv1.rotatedvalue"


async def test_the_next_request_carries_the_new_token() -> None:
    async with respx.mock(base_url=BASE, assert_all_called=True) as api:
        route = api.get("/ping").respond(200, json=doc())
        async with make_client(Metrics(), FakeTime()) as client:
            await client.get("/ping", endpoint="GET /ping")
            client.set_token(NEW_TOKEN)
            await client.get("/ping", endpoint="GET /ping")
    sent = [call.request.headers["Authorization"] for call in route.calls]
    assert sent == [f"Bearer {TOKEN}", f"Bearer {NEW_TOKEN}"]


async def test_an_empty_or_unchanged_token_changes_nothing() -> None:
    async with respx.mock(base_url=BASE) as api:
        route = api.get("/ping").respond(200, json=doc())
        async with make_client(Metrics(), FakeTime()) as client:
            client.set_token("")
            client.set_token(TOKEN)
            await client.get("/ping", endpoint="GET /ping")
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_both_the_new_and_the_old_token_are_redacted_after_a_swap() -> None:
    # A server (or proxy) echoing both tokens: the old one may come back in the answer to a
    # request sent before the swap.
    echo = f"old Bearer {TOKEN} new Bearer {NEW_TOKEN}"
    async with respx.mock(base_url=BASE) as api:
        api.get("/ping").respond(401, json=errors("401", echo))
        api.get("/slow").mock(side_effect=httpx.ReadTimeout(echo))
        async with make_client(Metrics(), FakeTime(), max_attempts=1) as client:
            client.set_token(NEW_TOKEN)
            with pytest.raises(UnauthorizedError) as unauthorized:
                await client.get("/ping", endpoint="GET /ping")
            with pytest.raises(TransportError) as timeout:
                await client.get("/slow", endpoint="GET /slow")
            assert NEW_TOKEN not in repr(client)
    for error in (unauthorized.value, timeout.value):
        for secret in (TOKEN, NEW_TOKEN):
            assert secret not in str(error)
            assert secret not in error.detail
        assert "***" in error.detail
