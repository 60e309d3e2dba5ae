"""typedpage.py: the typed fast path reads a workspaces page exactly as the tolerant parser
does, or not at all.

The tolerant parser (parse.py) stays the judge: for any body the fast path answers, its
entries must equal what `parse_workspace_page` + `worth_keeping` make of the same body, with
no problem and no unreadable entry; any other body must be left to the tolerant way (None).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.properties.profile import FUZZ
from tests.support.logstate import quiet_logs
from tests.support.pages import workspace_pages
from watchdog.metrics import Metrics
from watchdog.model import Observation
from watchdog.simulator.app import Simulator, build_app
from watchdog.simulator.scenario import generate
from watchdog.sources.tfc import source as source_module
from watchdog.sources.tfc.client import BadResponseError, TfcClient, decode_json
from watchdog.sources.tfc.parse import parse_workspace_page
from watchdog.sources.tfc.source import TfcSource, worth_keeping
from watchdog.sources.tfc.typedpage import ParsedPage, decode_workspace_page

ORG = "acme"
TOKEN = f"{ORG}-admin-token"
PAGINATION_KEYS = ("current-page", "page-size", "prev-page", "next-page", "total-pages")


@pytest.fixture(scope="module", autouse=True)
def _quiet_logs() -> Iterator[None]:
    """The tolerant parser warns about every odd entry the property makes; restored after."""
    with quiet_logs():
        yield


def tolerant(body: bytes) -> tuple[list[tuple[str, Any]], list[str], int]:
    """What the source makes of a body the tolerant way: (id, kept workspace), bad ids, errors."""
    workspaces, unreadable, errors = parse_workspace_page(decode_json(body), ORG)
    return [(ws.id, ws if worth_keeping(ws) else None) for ws in workspaces], unreadable, errors


def assert_same_as_tolerant(body: bytes, fast: ParsedPage) -> None:
    entries, unreadable, errors = tolerant(body)
    assert (fast.entries, unreadable, errors) == (entries, [], 0)
    # What TfcClient checks of a list page: the entries' ids, in order, and the counts.
    document = decode_json(body)
    assert fast["data"] == [{"id": entry["id"]} for entry in document["data"]]
    meta = document.get("meta")
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    if isinstance(pagination, dict):
        for key in (*PAGINATION_KEYS, "total-count"):
            assert fast["meta"]["pagination"].get(key) == pagination.get(key)
    else:
        assert fast.get("meta", {}).get("pagination") is None


# --- the simulator's pages ------------------------------------------------------------------


def standing_world(workspaces: int, locked: str) -> Any:
    """A generated organization whose clock stands still: every read sees the same world."""
    return generate(workspaces, locked, organization=ORG, time_scale=0.0)


def simulator_pages(workspaces: int, locked: str) -> list[bytes]:
    """Every page of a generated organization as the simulator serves it."""
    simulator = Simulator.from_scenario(standing_world(workspaces, locked))
    return [page.content for page in asyncio.run(workspace_pages(simulator, ORG))]


@pytest.fixture(scope="module")
def pages() -> list[bytes]:
    # 30% locked: users, teams and runs in every phase, so both kept and dropped workspaces.
    return simulator_pages(250, "30%")


def test_the_simulators_pages_take_the_fast_path_and_read_as_the_tolerant_parser(pages):
    kept = 0
    for body in pages:
        fast = decode_workspace_page(body, ORG)
        assert fast is not None
        assert_same_as_tolerant(body, fast)
        kept += sum(1 for _, ws in fast.entries if ws is not None)
    assert len(pages) == 3
    assert 50 < kept < 250  # locked or running ones kept, the others only by id


def _observe(app: Any, monkeypatch: pytest.MonkeyPatch, *, fast: bool) -> tuple[Observation, float]:
    if not fast:
        monkeypatch.setattr(source_module, "decode_workspace_page", lambda body, org: None)

    async def run() -> tuple[Observation, float]:
        metrics = Metrics()
        async with TfcClient(
            address="http://sim",
            token=TOKEN,
            metrics=metrics,
            transport=httpx.ASGITransport(app=app),
            requests_per_second=1000,
        ) as client:
            [observation] = await TfcSource(client, [ORG], metrics).observe()
        return observation, metrics.parse_errors._value.get()

    return asyncio.run(run())


def test_the_source_observes_the_same_through_either_path(monkeypatch):
    # One world for both reads, its clock standing still (the `Date` of every answer too).
    app = build_app(Simulator.from_scenario(standing_world(250, "30%")))
    fast, fast_errors = _observe(app, monkeypatch, fast=True)
    slow, slow_errors = _observe(app, monkeypatch, fast=False)
    assert fast.complete and slow.complete
    assert fast == slow
    assert fast.listed_ids == slow.listed_ids
    assert len(fast.listed_ids) == 250
    assert fast_errors == slow_errors == 0


# --- whatever is not the common shape goes the tolerant way ---------------------------------


def _clean_page(pages: list[bytes]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(pages[0])
    return document


def _locked_entry(document: dict[str, Any]) -> dict[str, Any]:
    return next(e for e in document["data"] if e["attributes"]["locked"])


def _entry_with_run(document: dict[str, Any]) -> dict[str, Any]:
    return next(e for e in document["data"] if e["relationships"]["current-run"]["data"])


def _run_of(document: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    run_id = entry["relationships"]["current-run"]["data"]["id"]
    return next(r for r in document["included"] if (r["type"], r["id"]) == ("runs", run_id))


def _set(path: str, value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        entry = document["data"][0]
        *parents, last = path.split(".")
        target = entry
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value

    return change


def _locked_without_reason(document: dict[str, Any]) -> None:
    del _locked_entry(document)["attributes"]["locked-reason"]


def _locked_by_nobody(document: dict[str, Any]) -> None:
    _locked_entry(document)["relationships"]["locked-by"] = {"data": None}


def _locked_by_an_unknown_type(document: dict[str, Any]) -> None:
    _locked_entry(document)["relationships"]["locked-by"]["data"]["type"] = "robots"


def _run_not_included(document: dict[str, Any]) -> None:
    entry = _entry_with_run(document)
    document["included"].remove(_run_of(document, entry))


def _run_status(value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        _run_of(document, _entry_with_run(document))["attributes"]["status"] = value

    return change


def _run_created_at(value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        _run_of(document, _entry_with_run(document))["attributes"]["created-at"] = value

    return change


def _run_action_flag(document: dict[str, Any]) -> None:
    _run_of(document, _entry_with_run(document))["attributes"]["actions"]["is-cancelable"] = 1


def _project_name_not_included(document: dict[str, Any]) -> None:
    document["included"] = [r for r in document["included"] if r["type"] != "projects"]


def _total_count(value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        document["meta"]["pagination"]["total-count"] = value

    return change


@pytest.mark.parametrize(
    "change",
    [
        _set("attributes.tag-names", KeyError),
        _set("attributes.tag-names", ["prod", 7]),
        _set("attributes.permissions", KeyError),
        _set("attributes.permissions", None),
        _set("attributes.permissions.can-unlock", "yes"),
        _set("attributes.locked", None),
        _set("attributes.locked-reason", 5),
        _set("attributes.name", ""),
        _set("attributes.latest-change-at", "yesterday"),
        _set("attributes.latest-change-at", 17),
        _set("attributes.apply-duration-average", -1),
        _set("attributes.apply-duration-average", 10**12),
        _set("attributes.apply-duration-average", True),
        _set("attributes.plan-duration-average", "5"),
        _set("relationships.project", KeyError),
        _set("relationships", KeyError),
        _set("relationships.current-run", "run-1"),
        _set("relationships.current-run.data", {"type": "workspaces", "id": "ws-x"}),
        _set("relationships.project.data.id", ""),
        _set("id", ""),
        _set("type", "runs"),
        _set("attributes", []),
        _locked_without_reason,
        _locked_by_nobody,
        _locked_by_an_unknown_type,
        _run_not_included,
        _run_status(""),
        _run_status(None),
        _run_created_at("2026-13-45T99:00:00Z"),
        _run_created_at("0001-01-01T00:00:00+01:00"),
        _run_created_at(None),
        _run_action_flag,
        _project_name_not_included,
        _total_count(2.0),
        _total_count(-1),
        _total_count("250"),
    ],
)
def test_a_page_with_any_problem_or_odd_value_is_left_to_the_tolerant_parser(pages, change):
    document = copy.deepcopy(_clean_page(pages))
    change(document)
    assert decode_workspace_page(json.dumps(document).encode(), ORG) is None


@pytest.mark.parametrize(
    "splice",
    [
        # msgspec does not check the UTF-8 of a string it skips; json refuses the body.
        b'"junk": "\xff",',
        # Nested deeper than the decoders read: the tolerant way refuses the page as today.
        b'"junk": ' + b"[" * 5000 + b"]" * 5000 + b",",
        b'"junk": NaN,',
    ],
)
def test_a_body_the_tolerant_decoder_treats_specially_is_left_to_it(pages, splice):
    body = b"{" + splice + pages[0][1:]
    assert decode_workspace_page(body, ORG) is None


def test_a_non_json_or_non_page_body_is_left_to_the_tolerant_decoder():
    for body in (b"", b"<html>", b"[]", b'{"data": {"id": "ws-1"}}', b'{"data": []} x'):
        assert decode_workspace_page(body, ORG) is None


def test_a_page_is_refused_as_a_whole_when_the_tolerant_parser_refuses_it():
    with pytest.raises(BadResponseError):
        tolerant(b'{"data": {"id": "ws-1"}}')
    assert decode_workspace_page(b'{"data": {"id": "ws-1"}}', ORG) is None


# --- the property: near-valid pages ---------------------------------------------------------

ABSENT = object()
timestamps = st.sampled_from(
    ["2026-01-15T12:00:00Z", "2026-01-15T12:00:00.123+00:00", "2026-01-15T12:00:00", "2026-01-15"]
)
odd = st.sampled_from([None, "", 0, -1, 1.5, True, [], {}, "not a time", 10**12, "run-1"])


def slot(valid: st.SearchStrategy[Any], *, odds: int = 60) -> st.SearchStrategy[Any]:
    """Mostly valid (so that whole pages often are); one time in `odds` absent or an odd
    value of another type."""
    return st.integers(1, odds).flatmap(lambda n: (st.just(ABSENT) | odd) if n == 1 else valid)


def flags(names: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({}, optional=dict.fromkeys(names, slot(st.booleans())))


def reference(types: list[str], ids: list[str]) -> st.SearchStrategy[Any]:
    ref = st.fixed_dictionaries(
        {"type": slot(st.sampled_from(types)), "id": slot(st.sampled_from(ids))}
    )
    return slot(st.fixed_dictionaries({"data": st.none() | ref}))


statuses = st.sampled_from(
    ["applying", "planning", "planned", "applied", "errored", "pending", "quantum"]
)
run_resource = st.fixed_dictionaries(
    {
        "type": st.just("runs"),
        "id": st.sampled_from(["run-1", "run-2"]),
        "attributes": slot(
            st.fixed_dictionaries(
                {
                    "status": slot(statuses),
                    "created-at": slot(timestamps),
                    "status-timestamps": slot(
                        st.dictionaries(
                            st.sampled_from(
                                ["applying-at", "planning-at", "planned-at", "pending-at"]
                            ),
                            slot(timestamps),
                            max_size=3,
                        )
                    ),
                    "actions": slot(
                        flags(("is-cancelable", "is-force-cancelable", "is-discardable"))
                    ),
                    "permissions": slot(flags(("can-cancel", "can-force-cancel", "can-discard"))),
                    "canceled-at": slot(st.none() | timestamps),
                    "force-cancel-available-at": slot(st.none() | timestamps),
                    "junk": odd,
                }
            )
        ),
    }
)


def named(kind: str, ident: str, **attributes: Any) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {
            "type": st.just(kind),
            "id": st.just(ident),
            "attributes": slot(
                st.fixed_dictionaries({k: slot(st.just(v)) for k, v in attributes.items()})
            ),
        }
    )


# What the references of the entries below resolve to; each may be missing or odd.
included = st.tuples(
    slot(named("projects", "prj-1", name="core")),
    slot(named("users", "user-1", username="alice")),
    slot(named("teams", "team-1", name="devs")),
    slot(run_resource.map(lambda r: {**r, "id": "run-1"})),
    slot(run_resource.map(lambda r: {**r, "id": "run-2"})),
).map(list)
workspace_entry = st.fixed_dictionaries(
    {
        "id": slot(st.sampled_from(["ws-1", "ws-2", "ws-3"])),
        "type": slot(st.just("workspaces")),
        "attributes": slot(
            st.fixed_dictionaries(
                {
                    "name": slot(st.just("web")),
                    "locked": slot(st.booleans()),
                    "locked-reason": slot(st.none() | st.text(max_size=5)),
                    "tag-names": slot(st.lists(st.text(max_size=4), max_size=2)),
                    "permissions": slot(
                        flags(("can-lock", "can-unlock", "can-force-unlock", "can-queue-run"))
                    ),
                    "latest-change-at": slot(st.none() | timestamps),
                    "plan-duration-average": slot(
                        st.none() | st.integers(0, 10**6) | st.floats(0, 1e6)
                    ),
                    "apply-duration-average": slot(st.none() | st.integers(0, 10**6)),
                    "execution-mode": odd,
                }
            )
        ),
        "relationships": slot(
            st.fixed_dictionaries(
                {
                    "project": reference(["projects"], ["prj-1"]),
                    "current-run": reference(["runs"], ["run-1", "run-2"]),
                    "locked-by": reference(
                        ["users", "teams", "runs"], ["user-1", "team-1", "run-1"]
                    ),
                    "organization": reference(["organizations"], [ORG]),
                }
            )
        ),
        "links": odd,
    }
)
pagination = st.fixed_dictionaries(
    {},
    optional={
        key: slot(st.none() | st.integers(0, 10**4)) for key in (*PAGINATION_KEYS, "total-count")
    },
)
list_pages = st.fixed_dictionaries(
    {
        "data": st.lists(workspace_entry, max_size=4),
        "included": slot(included),
        "meta": slot(st.fixed_dictionaries({"pagination": slot(pagination)})),
    }
)


def _drop_absent(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_absent(v) for k, v in value.items() if v is not ABSENT}
    if isinstance(value, list):
        return [_drop_absent(v) for v in value if v is not ABSENT]
    return value


@FUZZ
@given(list_pages)
def test_the_fast_path_answers_only_what_the_tolerant_parser_answers(document):
    body = json.dumps(_drop_absent(document)).encode()
    fast = decode_workspace_page(body, ORG)
    if fast is None:
        return  # left to the tolerant way: nothing to compare
    assert_same_as_tolerant(body, fast)
