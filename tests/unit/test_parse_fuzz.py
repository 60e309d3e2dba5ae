"""Fuzzing the API-payload path: whatever the server sends, only the typed error escapes.

The parser (parse_workspace_page / parse_workspace_document) and the client's response
handling get JSON:API-shaped documents with random values in every slot, and arbitrary JSON
and bytes. The only exception allowed out is BadResponseError (the client: a TfcError
subclass for error statuses); anything else (KeyError, TypeError, AttributeError, ...) would
be a crash of the cycle on a bad day of the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from tests.properties.profile import FUZZ
from tests.support.logstate import quiet_logs
from tests.support.tfcapi import BASE, DATE, TOKEN, respx_client
from watchdog.metrics import Metrics
from watchdog.sources.errors import SourceError
from watchdog.sources.tfc.client import BadResponseError, TfcError
from watchdog.sources.tfc.parse import parse_workspace_document, parse_workspace_page
from watchdog.sources.tfc.source import TfcSource


@pytest.fixture(scope="module", autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Thousands of "observe failed" warnings would drown the output; restored after."""
    with quiet_logs():
        yield


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["", "2026-01-15T12:00:00Z", "2026-13-45T99:00:00Z", "runs", "users"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


# What a wrong-typed slot holds: any scalar or a small container. The parser's reaction to a
# wrong type does not depend on how deep the junk goes, and full-size `json_values` in every
# slot of a four-entry page made each document hundreds of leaves (most of the run time).
junk = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=2) | st.dictionaries(st.text(max_size=4), children, max_size=2)
    ),
    max_leaves=4,
)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A slot that is usually well-formed and sometimes anything at all."""
    return valid | valid | junk


timestamps = st.sampled_from(
    ["2026-01-15T12:00:00Z", "2026-01-15T12:00:00.123+00:00", "2026-01-15T12:00:00"]
)
relationship = st.fixed_dictionaries(
    {
        "data": maybe(
            st.none()
            | st.fixed_dictionaries(
                {
                    "type": maybe(st.sampled_from(["users", "teams", "runs", "organizations"])),
                    "id": maybe(st.sampled_from(["run-1", "user-1", "team-1", "acme"])),
                }
            )
        )
    }
)
run_resource = st.fixed_dictionaries(
    {
        "type": st.just("runs"),
        "id": maybe(st.just("run-1")),
        "attributes": maybe(
            st.fixed_dictionaries(
                {
                    "status": maybe(st.sampled_from(["applying", "planned", "applied", "new"])),
                    "created-at": maybe(timestamps),
                    "status-timestamps": maybe(st.dictionaries(st.text(max_size=8), timestamps)),
                    "actions": maybe(st.dictionaries(st.text(max_size=20), st.booleans())),
                    "permissions": junk,
                    "canceled-at": maybe(st.none() | timestamps),
                    "force-cancel-available-at": maybe(st.none() | timestamps),
                }
            )
        ),
    }
)
workspace_entry = st.fixed_dictionaries(
    {
        "id": maybe(st.sampled_from(["ws-1", "ws-2"])),
        "type": maybe(st.just("workspaces")),
        "attributes": maybe(
            st.fixed_dictionaries(
                {
                    "name": maybe(st.just("web")),
                    "locked": maybe(st.booleans()),
                    "locked-reason": maybe(st.none() | st.text(max_size=10)),
                    "tag-names": maybe(st.lists(st.text(max_size=5), max_size=3)),
                    "permissions": junk,
                }
            )
        ),
        "relationships": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "locked-by": maybe(relationship),
                    "current-run": maybe(relationship),
                    "project": maybe(relationship),
                    "organization": maybe(relationship),
                },
            )
        ),
    }
)
included = maybe(st.lists(maybe(run_resource), max_size=3))
list_documents = st.fixed_dictionaries(
    {"data": maybe(st.lists(maybe(workspace_entry), max_size=4))},
    optional={"included": included, "meta": junk},
)
single_documents = st.fixed_dictionaries(
    {"data": maybe(workspace_entry)}, optional={"included": included}
)


@FUZZ
@given(list_documents | st.dictionaries(st.text(max_size=8), json_values))
def test_a_workspace_page_parses_or_raises_only_bad_response(doc: dict[str, Any]) -> None:
    try:
        workspaces, unreadable, errors = parse_workspace_page(doc, "acme")
    except BadResponseError:
        return
    data = doc["data"]
    # Every entry is either a workspace or counted as an error: none silently vanishes. A
    # workspace with a missing or malformed field is both: kept for the report, and counted.
    flawed = sum(1 for workspace in workspaces if workspace.problems)
    assert len(workspaces) + errors - flawed == len(data)
    assert len(unreadable) <= errors - flawed


@FUZZ
@given(single_documents | st.dictionaries(st.text(max_size=8), json_values))
def test_a_workspace_document_parses_or_raises_only_bad_response(doc: dict[str, Any]) -> None:
    with contextlib.suppress(BadResponseError):
        parse_workspace_document(doc, "acme")


def _json_response(value: Any) -> httpx.Response:
    # json.dumps writes NaN/Infinity, which Python's parser (and so httpx) reads back.
    headers = {"Content-Type": "application/vnd.api+json", "Date": DATE}
    return httpx.Response(200, content=json.dumps(value).encode(), headers=headers)


bodies = (
    list_documents.map(_json_response)
    | json_values.map(_json_response)
    | st.binary(max_size=64).map(lambda b: httpx.Response(200, content=b, headers={"Date": DATE}))
    | st.text(max_size=64).map(
        lambda t: httpx.Response(200, text=t, headers={"Content-Type": "text/html", "Date": DATE})
    )
)


async def _observe_and_read(response: httpx.Response) -> str | None:
    """Observe and re-read through the real client and source; what the observation's error
    says when it is incomplete."""
    metrics = Metrics()
    with respx.mock(base_url=BASE, assert_all_mocked=True) as router:
        router.get("/organizations/acme/workspaces").mock(return_value=response)
        router.get("/workspaces/ws-1").mock(return_value=response)
        async with respx_client(metrics, requests_per_second=1e6, max_attempts=1) as client:
            source = TfcSource(client, ["acme"], metrics)
            # observe() never raises for what the server sends: it reports incomplete.
            observations = await source.observe()
            assert len(observations) == 1
            observation = observations[0]
            if not observation.complete:
                assert observation.error
            refused: SourceError | None = None
            try:
                await source.read_workspace("ws-1", "acme")
            except SourceError as exc:
                refused = exc
            # Translated for act.py; only an unreadable answer may be its cause.
            assert refused is None or isinstance(refused.__cause__, BadResponseError)
            return observation.error


@FUZZ
@given(bodies)
def test_the_source_survives_any_200_body(response: httpx.Response) -> None:
    asyncio.run(_observe_and_read(response))


async def _get(status: int, content: bytes, content_type: str) -> None:
    with respx.mock(base_url=BASE, assert_all_mocked=True) as router:
        router.get("/x").mock(
            return_value=httpx.Response(
                status, content=content, headers={"Content-Type": content_type, "Date": DATE}
            )
        )
        async with respx_client(Metrics(), requests_per_second=1e6, max_attempts=1) as client:
            error: TfcError | None = None
            try:
                await client.get("/x", endpoint="GET /x")
            except TfcError as exc:
                error = exc
            if error is not None:
                assert TOKEN not in str(error)
                if 200 <= status < 300:
                    assert isinstance(error, BadResponseError)


@FUZZ
@given(
    st.sampled_from([200, 201, 204, 400, 401, 403, 404, 409, 415, 422, 429, 500, 502, 503]),
    st.binary(max_size=64) | json_values.map(lambda v: repr(v).encode()),
    st.sampled_from(["application/vnd.api+json", "text/html", "application/json", ""]),
)
def test_the_client_raises_only_typed_errors_for_any_response(
    status: int, content: bytes, content_type: str
) -> None:
    asyncio.run(_get(status, content, content_type))


# --- JSON nested deeper than the decoders and the interpreter can follow ----------------------

_DEEP = "__deep__"
_DEEP_SLOTS: dict[str, Any] = {
    "data": {"data": _DEEP},
    "entry": {"data": [_DEEP]},
    "id": {"data": [{"id": _DEEP, "type": "workspaces", "attributes": {}}]},
    "name": {"data": [{"id": "ws-1", "type": "workspaces", "attributes": {"name": _DEEP}}]},
    "relationship": {
        "data": [
            {
                "id": "ws-1",
                "type": "workspaces",
                "attributes": {"name": "a", "locked": True},
                "relationships": {"locked-by": {"data": _DEEP}},
            }
        ]
    },
    "included": {"data": [], "included": [_DEEP]},
    "total-pages": {"data": [], "meta": {"pagination": {"total-pages": _DEEP}}},
    "next-page": {"data": [], "meta": {"pagination": {"next-page": _DEEP}}},
}


def _deep(depth: int, opener: str) -> str:
    closer = "]" if opener == "[" else "}"
    inner = "[]" if opener == "[" else "1"
    return opener * depth + inner + closer * depth


@pytest.mark.parametrize("slot", sorted(_DEEP_SLOTS))
@pytest.mark.parametrize("depth", [990, 1030, 5000])
@pytest.mark.parametrize("opener", ["[", '{"a": '])
def test_the_source_survives_json_nested_too_deep_in_any_slot(
    slot: str, depth: int, opener: str
) -> None:
    # 990 levels decode (orjson allows 1,024) but cannot be repr()'d; 1,030 and 5,000 do
    # not decode. Either way only a typed error may come out, never RecursionError.
    raw = json.dumps(_DEEP_SLOTS[slot]).replace(f'"{_DEEP}"', _deep(depth, opener))
    headers = {"Content-Type": "application/vnd.api+json", "Date": DATE}
    error = asyncio.run(
        _observe_and_read(httpx.Response(200, content=raw.encode(), headers=headers))
    )
    # Refused for its body, not before it was read (a read without `Date` never gets there).
    assert "`Date`" not in (error or "")


@pytest.mark.parametrize("status", [200, 404, 409, 429, 500])
def test_the_client_raises_only_typed_errors_for_a_body_nested_too_deep(status: int) -> None:
    asyncio.run(_get(status, _deep(5000, "[").encode(), "application/vnd.api+json"))
