"""The simulator's lying-list faults (faults.LIST_KINDS), as a client sees them over HTTP."""

from __future__ import annotations

import json

import pytest

from tests.support.simulator import SimulatorServer

LIST = r"/organizations/[^/]+/workspaces$"


def _page(simulator: SimulatorServer, number: int) -> dict[str, object]:
    with simulator.client() as api:
        response = api.get(
            "organizations/demo/workspaces",
            params={"page[number]": str(number), "page[size]": "2"},
        )
    assert response.status_code == 200
    document: dict[str, object] = response.json()
    return document


def _ids(document: dict[str, object]) -> list[str]:
    data = document["data"]
    assert isinstance(data, list)
    return [entry["id"] for entry in data]


def _pagination(document: dict[str, object]) -> dict[str, object]:
    meta = document["meta"]
    assert isinstance(meta, dict)
    pagination: dict[str, object] = meta["pagination"]
    return pagination


def test_repeat_page_answers_every_page_with_page_one(simulator):
    first, honest_second = _page(simulator, 1), _page(simulator, 2)
    assert _ids(first) != _ids(honest_second)
    simulator.inject_fault("repeat_page", LIST)
    assert _ids(_page(simulator, 2)) == _ids(first)
    assert _ids(_page(simulator, 1)) == _ids(first)
    # The request log keeps what the client asked for.
    asked = [r["query"] for r in simulator.requests() if r["path"].endswith("/workspaces")]
    assert "page%5Bnumber%5D=2" in asked[-2]


def test_endless_pages_drops_the_totals_and_always_names_a_next_page(simulator):
    simulator.inject_fault("endless_pages", LIST)
    far = _pagination(_page(simulator, 500))
    assert far["next-page"] == 501
    assert "total-pages" not in far
    assert "total-count" not in far


def test_absurd_total_promises_ten_million_pages(simulator):
    honest = _ids(_page(simulator, 1))
    simulator.inject_fault("absurd_total", LIST, count=1)
    document = _page(simulator, 1)
    assert _ids(document) == honest
    assert _pagination(document)["total-pages"] == 10_000_000
    assert _pagination(document)["total-count"] == 1_000_000_000


def test_deep_json_is_nested_beyond_the_decoders(simulator):
    simulator.inject_fault("deep_json", LIST, count=1)
    with simulator.client() as api:
        response = api.get("organizations/demo/workspaces")
    assert response.status_code == 200
    assert response.content.startswith(b'{"data": ' + b"[" * 5000)
    with pytest.raises(RecursionError):
        json.loads(response.content)
