"""Fixtures of the TFC client and source unit tests: fresh metrics, and a respx router that
answers for the API at `tests.support.tfcapi.BASE`, refuses any request it was not told of
and fails a test that leaves one of its routes unused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import respx

from tests.support.tfcapi import BASE
from watchdog.metrics import Metrics


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def api() -> AsyncIterator[respx.MockRouter]:
    async with respx.mock(base_url=BASE, assert_all_mocked=True, assert_all_called=True) as r:
        yield r
