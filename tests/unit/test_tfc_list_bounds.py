"""TfcClient.map_pages against lists that lie: a list is read whole, within what page 1
promised, or it is an IncompleteListError; and bodies nested too deeply are bad responses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.tfcapi import DATED, respx_client
from watchdog.metrics import Metrics
from watchdog.sources.tfc.client import (
    MAX_LIST_ITEMS,
    MAX_LIST_PAGES,
    MAX_PAGE_SIZE,
    BadResponseError,
    IncompleteListError,
    NotFoundError,
    TfcClient,
)
from watchdog.sources.tfc.source import PAGE_SIZE

PATH = "/organizations/acme/workspaces"
LIST = "GET /organizations/:org/workspaces"
JSONAPI = {"Content-Type": "application/vnd.api+json", **DATED}


@pytest.fixture
async def client() -> AsyncIterator[TfcClient]:
    async with respx_client(Metrics(), requests_per_second=100_000.0) as c:
        yield c


def page(number: int, ids: list[str], **pagination: Any) -> httpx.Response:
    body = {
        "data": [{"id": ident, "type": "workspaces"} for ident in ids],
        "meta": {"pagination": {"current-page": number, **pagination}},
    }
    return httpx.Response(200, json=body, headers=DATED)


def number_of(request: httpx.Request) -> int:
    return int(request.url.params["page[number]"])


async def read(client: TfcClient) -> list[dict[str, Any]]:
    return await client.map_pages(
        PATH, endpoint=LIST, params={"page[size]": "100"}, each=lambda page: page
    )


# --- what page 1 promised -------------------------------------------------------------------


def test_the_source_asks_for_the_page_size_the_bounds_assume():
    # The caps are derived at the largest page size; a source asking for smaller pages
    # would have large organizations refused as "more pages than any list needs".
    assert int(PAGE_SIZE) == MAX_PAGE_SIZE
    assert MAX_LIST_PAGES * MAX_PAGE_SIZE == MAX_LIST_ITEMS >= 50_000


@pytest.mark.parametrize(
    ("ids", "pagination", "refusal"),
    [
        (["ws-1"], {"total-pages": 10_000_000}, "promises 10000000 pages"),
        (["ws-1"], {"total-pages": 2, "total-count": 1_000_000_000}, "promises 1000000000 items"),
        # 3 items at 100 a page are one page, not 50.
        (
            ["ws-1", "ws-2", "ws-3"],
            {"total-pages": 50, "total-count": 3},
            "more than the 1 this list can need",
        ),
    ],
    ids=["absurd-page-count", "absurd-item-count", "more-pages-than-the-items-need"],
)
async def test_a_first_page_promising_the_impossible_is_refused_after_one_request(
    api, client, ids, pagination, refusal
):
    route = api.get(PATH).mock(side_effect=lambda r: page(number_of(r), ids, **pagination))
    with pytest.raises(IncompleteListError, match=refusal):
        await read(client)
    assert route.call_count == 1


async def test_the_page_size_the_server_answers_sets_the_page_bound(api, client):
    # The server pages by 2 though 100 were asked for: 5 items are 3 pages, read whole.
    items = [f"ws-{n}" for n in range(5)]

    def respond(request: httpx.Request) -> httpx.Response:
        number = number_of(request)
        meta = {"total-pages": 3, "total-count": 5, "page-size": 2}
        return page(number, items[(number - 1) * 2 : number * 2], **meta)

    route = api.get(PATH).mock(side_effect=respond)
    pages = await read(client)
    assert [item["id"] for p in pages for item in p["data"]] == items
    assert route.call_count == 3


# --- next-page walks ------------------------------------------------------------------------


async def test_a_next_page_that_never_ends_stops_at_the_page_cap(api, client, monkeypatch):
    # The real cap (1,000 pages) takes a second here; the rule is the same at 40.
    monkeypatch.setattr("watchdog.sources.tfc.client.MAX_LIST_PAGES", 40)
    route = api.get(PATH).mock(
        side_effect=lambda r: page(
            number_of(r), [f"run-{number_of(r)}"], **{"next-page": number_of(r) + 1}
        )
    )
    with pytest.raises(IncompleteListError, match="after 40 pages"):
        await read(client)
    assert route.call_count == 40


async def test_a_next_page_walk_stops_at_what_total_count_needs(api, client):
    def respond(request: httpx.Request) -> httpx.Response:
        number = number_of(request)
        meta = {"next-page": number + 1, "total-count": 4, "page-size": 2}
        return page(number, [f"run-{number}a", f"run-{number}b"], **meta)

    route = api.get(PATH).mock(side_effect=respond)
    with pytest.raises(IncompleteListError, match="after 2 pages"):
        await read(client)
    assert route.call_count == 2


# --- pages that are not one list ------------------------------------------------------------


async def test_pages_repeating_page_one_are_not_one_list(api, client):
    route = api.get(PATH).mock(
        side_effect=lambda r: page(
            1, ["ws-1", "ws-2"], **{"total-pages": 3, "total-count": 6, "page-size": 2}
        )
    )
    with pytest.raises(IncompleteListError, match="'ws-1' is on two pages"):
        await read(client)
    assert route.call_count <= 3


async def test_fewer_items_than_total_count_are_not_the_whole_list(api, client):
    api.get(PATH).mock(
        side_effect=lambda r: page(
            number_of(r),
            [f"ws-{number_of(r)}"],
            **{"total-pages": 2, "total-count": 3, "page-size": 2},
        )
    )
    with pytest.raises(IncompleteListError, match="hold 2 items, not the total-count of 3"):
        await read(client)


async def test_more_items_than_total_count_are_not_the_whole_list(api, client):
    api.get(PATH).mock(
        side_effect=lambda r: page(
            number_of(r), [f"ws-{number_of(r)}-{n}" for n in range(3)], **{"total-count": 2}
        )
    )
    with pytest.raises(IncompleteListError, match="more items than the total-count of 2"):
        await read(client)


async def test_a_whole_list_without_totals_is_still_read(api, client):
    def respond(request: httpx.Request) -> httpx.Response:
        number = number_of(request)
        return page(number, [f"run-{number}"], **{"next-page": number + 1 if number < 3 else None})

    api.get(PATH).mock(side_effect=respond)
    pages = await read(client)
    assert [p["data"][0]["id"] for p in pages] == ["run-1", "run-2", "run-3"]


# --- bodies nested too deeply ---------------------------------------------------------------


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [1100, 5000, 100_000])
async def test_a_body_nested_too_deeply_is_a_bad_response(api, client, depth):
    api.get(PATH).respond(200, headers=JSONAPI, content=b'{"data": ' + nested(depth) + b"}")
    with pytest.raises(BadResponseError, match="body is not JSON"):
        await read(client)


async def test_an_error_body_nested_too_deeply_keeps_its_typed_error(api, client):
    api.get("/workspaces/ws-1").respond(404, headers=JSONAPI, content=nested(5000))
    with pytest.raises(NotFoundError):
        await client.get("/workspaces/ws-1", endpoint="GET /workspaces/:id")


async def test_a_pagination_value_too_deep_to_repr_is_a_bad_response(api, client):
    # orjson decodes 990 levels; the message about the malformed value must not repr() it.
    body = b'{"data": [], "meta": {"pagination": {"total-pages": ' + nested(990) + b"}}}"
    api.get(PATH).respond(200, headers=JSONAPI, content=body)
    with pytest.raises(BadResponseError, match="total-pages is"):
        await read(client)


async def test_a_short_page_that_names_a_next_page_ends_the_walk(api, client):
    # Only the last page of a list is short: an empty page still naming a next one is the
    # start of pages without end.
    def respond(request: httpx.Request) -> httpx.Response:
        number = number_of(request)
        ids = [f"run-{number}a", f"run-{number}b"] if number == 1 else []
        return page(number, ids, **{"next-page": number + 1, "page-size": 2})

    route = api.get(PATH).mock(side_effect=respond)
    with pytest.raises(IncompleteListError, match="a page of 0 items"):
        await read(client)
    assert route.call_count == 2
