"""TfcSource against respx: request economy, incomplete observations, re-read, actions."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.support.builders import ALICE, PLATFORM, policy, run_holder
from tests.support.clock import FakeClock
from tests.support.tfcapi import DATE, DATED, TOKEN, respx_client
from watchdog.decide import decide
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import (
    Holder,
    HolderType,
    Observation,
    Run,
    RunActions,
    Source,
    Workspace,
)
from watchdog.sources.errors import ChangedError, ForbiddenError, RetryLaterError, SourceError
from watchdog.sources.tfc.client import (
    BadResponseError,
    TfcClient,
    TfcError,
    UnauthorizedError,
)
from watchdog.sources.tfc.source import TfcSource, worth_keeping


@pytest.fixture
async def client(metrics: Metrics) -> AsyncIterator[TfcClient]:
    async with respx_client(metrics, max_attempts=2) as c:
        yield c


def workspace(number: int, **attributes: Any) -> dict[str, Any]:
    return {
        "id": f"ws-{number:05d}",
        "type": "workspaces",
        "attributes": {
            "name": f"app-{number}",
            "locked": False,
            "tag-names": [],
            "permissions": {},
            **attributes,
        },
        "relationships": {"project": {"data": None}},
    }


def workspaces_api(
    total: int,
    *,
    fail_page: int | None = None,
    entries: list[Any] | None = None,
    included: list[Any] | None = None,
) -> Any:
    """A side effect serving `total` workspaces in pages of page[size]."""
    all_entries = entries if entries is not None else [workspace(n) for n in range(total)]

    def respond(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        assert params["include"] == "current_run,locked_by,project"
        size = int(params["page[size]"])
        number = int(params["page[number]"])
        if number == fail_page:
            return httpx.Response(500, json={"errors": [{"status": "500", "title": "boom"}]})
        pages = max(1, math.ceil(len(all_entries) / size))
        return httpx.Response(
            200,
            headers={"Date": DATE},
            json={
                "data": all_entries[(number - 1) * size : number * size],
                "included": included or [],
                "meta": {
                    "pagination": {
                        "current-page": number,
                        "page-size": size,
                        "total-pages": pages,
                        "total-count": len(all_entries),
                    }
                },
            },
        )

    return respond


def observe_errors(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "tfc_watchdog_observe_errors_total", {"source": "tfc", "reason": reason}
    )
    return value or 0.0


# --- observe --------------------------------------------------------------------------------


async def test_250_workspaces_cost_exactly_three_list_requests(api, client, metrics):
    route = api.get("/organizations/acme/workspaces").mock(side_effect=workspaces_api(250))
    [observation] = await TfcSource(client, ["acme"], metrics).observe()
    assert route.call_count == 3
    assert sorted(int(c.request.url.params["page[number]"]) for c in route.calls) == [1, 2, 3]
    assert all(c.request.url.params["page[size]"] == "100" for c in route.calls)
    assert observation.source is Source.TFC
    assert observation.organization == "acme"
    assert observation.complete is True
    assert observation.error is None
    # Every workspace is read; none is locked or has a run, so none is kept whole.
    assert observation.ids_read == frozenset(f"ws-{n:05d}" for n in range(250))
    assert observation.workspaces == ()
    assert observation.total_workspaces == 250
    assert observation.server_now == datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    assert (
        metrics.registry.get_sample_value(
            "tfc_watchdog_api_requests_total",
            {"endpoint": "GET /organizations/:org/workspaces", "code": "200"},
        )
        == 3
    )


async def test_a_failing_page_gives_an_incomplete_observation_not_an_exception(
    api, client, metrics
):
    api.get("/organizations/acme/workspaces").mock(side_effect=workspaces_api(250, fail_page=2))
    with capture_logs() as logs:
        [observation] = await TfcSource(client, ["acme"], metrics).observe()
    assert observation.complete is False
    assert observation.workspaces == ()
    assert observation.error is not None
    assert "GET /organizations/:org/workspaces: HTTP 500" in observation.error
    assert observe_errors(metrics, "server_error") == 1
    failed = [entry for entry in logs if entry["event"] == "tfc.observe_failed"]
    assert failed[0]["organization"] == "acme"
    assert failed[0]["reason"] == "server_error"


async def test_organizations_are_observed_independently(api, client, metrics):
    api.get("/organizations/good/workspaces").mock(side_effect=workspaces_api(3))
    api.get("/organizations/gone/workspaces").respond(404, json={"errors": [{"status": 404}]})
    observations = await TfcSource(client, ["good", "gone"], metrics).observe()
    assert [(o.organization, o.complete) for o in observations] == [
        ("good", True),
        ("gone", False),
    ]
    assert len(observations[0].ids_read) == 3
    assert observe_errors(metrics, "not_found") == 1


async def test_a_bad_token_is_an_incomplete_observation_with_reason_unauthorized(
    api, client, metrics
):
    api.get("/organizations/acme/workspaces").respond(401)
    [observation] = await TfcSource(client, ["acme"], metrics).observe()
    assert observation.complete is False
    assert observe_errors(metrics, "unauthorized") == 1
    assert TOKEN not in (observation.error or "")


async def test_a_malformed_entry_is_unreadable_counted_and_logged_with_its_id(api, client, metrics):
    broken = {"id": "ws-broken", "type": "workspaces", "attributes": {"locked": "maybe"}}
    entries = [workspace(1), broken, workspace(2)]
    api.get("/organizations/acme/workspaces").mock(side_effect=workspaces_api(3, entries=entries))
    with capture_logs() as logs:
        [observation] = await TfcSource(client, ["acme"], metrics).observe()
    assert observation.complete is True
    assert observation.ids_read == frozenset({"ws-00001", "ws-00002"})
    assert observation.unreadable == frozenset({"ws-broken"})
    assert observation.total_workspaces == 3
    assert metrics.registry.get_sample_value("tfc_watchdog_parse_errors_total") == 1
    assert any(
        entry["event"] == "tfc.parse_error" and entry["workspace_id"] == "ws-broken"
        for entry in logs
    )


async def test_an_empty_organization_is_one_request_and_complete(api, client, metrics):
    route = api.get("/organizations/acme/workspaces").mock(side_effect=workspaces_api(0))
    [observation] = await TfcSource(client, ["acme"], metrics).observe()
    assert route.call_count == 1
    assert observation.complete is True
    assert observation.workspaces == ()


# --- what an observation keeps whole (50,000 parsed workspaces held ~190 MB) -------


def run_entry(run_id: str, status: str) -> dict[str, Any]:
    return {
        "id": run_id,
        "type": "runs",
        "attributes": {"status": status, "created-at": "2026-03-03T08:00:00Z"},
    }


def with_run(entry: dict[str, Any], run_id: str) -> dict[str, Any]:
    entry["relationships"] = {"current-run": {"data": {"type": "runs", "id": run_id}}}
    return entry


async def test_only_locked_workspaces_and_non_final_runs_are_kept_but_every_id_is_read(
    api, client, metrics
):
    locked = workspace(1, locked=True)
    locked["relationships"] = {"locked-by": {"data": {"type": "users", "id": "user-1"}}}
    entries = [
        locked,
        workspace(2),  # no run
        with_run(workspace(3), "run-applied"),
        with_run(workspace(4), "run-applying"),
        with_run(workspace(5), "run-new-status"),  # unknown: non-final
        with_run(workspace(6), "run-planned"),  # waiting for a human
        with_run(workspace(7), "run-errored"),
    ]
    runs = [
        run_entry("run-applied", "applied"),
        run_entry("run-applying", "applying"),
        run_entry("run-new-status", "teleporting"),
        run_entry("run-planned", "planned"),
        run_entry("run-errored", "errored"),
    ]
    api.get("/organizations/acme/workspaces").mock(
        side_effect=workspaces_api(7, entries=entries, included=runs)
    )
    [observation] = await TfcSource(client, ["acme"], metrics).observe()
    assert [ws.id for ws in observation.workspaces] == [
        "ws-00001",
        "ws-00004",
        "ws-00005",
        "ws-00006",
    ]
    assert observation.ids_read == frozenset(f"ws-{n:05d}" for n in range(1, 8))
    assert observation.workspace_count == 7


async def test_a_workspace_listed_on_two_pages_makes_the_read_incomplete(api, client, metrics):
    # The list shifted between pages (or a page was answered twice): ws-00010 is on page 1
    # and on page 2. Such pages are not one list, so nothing of it is relied on.
    entries = [workspace(n) for n in range(150)]
    entries[120] = workspace(10, locked=True)
    api.get("/organizations/acme/workspaces").mock(side_effect=workspaces_api(150, entries=entries))
    [observation] = await TfcSource(client, ["acme"], metrics).observe()
    assert observation.complete is False
    assert "ws-00010" in (observation.error or "")
    assert observation.error_reason == "bad_response"
    assert observation.ids_read == frozenset()
    assert observe_errors(metrics, "bad_response") == 1


def _locked(number: int) -> dict[str, Any]:
    entry = workspace(number, locked=True, **{"locked-reason": "apply"})
    holder = {"locked-by": {"data": {"type": "users", "id": "user-1"}}}
    entry["relationships"] = {**entry["relationships"], **holder}
    return entry


USERS = [{"id": "user-1", "type": "users", "attributes": {"username": "alice"}}]


def _repeating_page_one(entries: list[dict[str, Any]]) -> Any:
    """Every page of the list answers with page 1's body (a cache or proxy gone wrong)."""
    honest = workspaces_api(len(entries), entries=entries, included=USERS)

    def respond(request: httpx.Request) -> httpx.Response:
        first = request.url.copy_set_param("page[number]", "1")
        return honest(httpx.Request("GET", first))  # type: ignore[no-any-return]

    return respond


async def test_pages_answering_page_one_again_are_incomplete_and_memory_keeps_every_age(
    api, client, metrics
):
    # 250 workspaces on three pages, every tenth locked: 25 locks, 10 of them on page 1.
    entries = [_locked(n) if n % 10 == 0 else workspace(n) for n in range(250)]
    route = api.get("/organizations/acme/workspaces")
    route.mock(side_effect=workspaces_api(250, entries=entries, included=USERS))
    source = TfcSource(client, ["acme"], metrics)
    memory = Memory()
    # Two whole reads a minute apart (one cycle apart at the default interval).
    earlier = datetime(2026, 3, 3, 9, 58, tzinfo=UTC)
    whole = await source.observe()
    memory.update(whole, earlier)
    memory.update(whole, datetime(2026, 3, 3, 9, 59, tzinfo=UTC))
    assert len(memory) == 25

    route.mock(side_effect=_repeating_page_one(entries))
    observations = await source.observe()
    [observation] = observations
    assert observation.complete is False
    assert "two pages" in (observation.error or "")
    memory.update(observations, NOW)
    # No lock is forgotten, and none restarts its age.
    assert len(memory) == 25
    assert {memory.first_seen(f"ws-{n:05d}", "user-1") for n in range(0, 250, 10)} == {earlier}
    config = policy(dry_run=False, defaults={"lock_stale_after": "1m", "actions": ["force_unlock"]})
    # The same locks, read whole, would be force-unlocked now; read from repeated pages,
    # nothing is.
    assert decide(whole, config, memory, NOW, identity=None).planned
    assert decide(observations, config, memory, NOW, identity=None).planned == ()


async def test_pages_holding_fewer_items_than_total_count_are_an_incomplete_read(
    api, client, metrics
):
    # A workspace was deleted while the list was walked: the list shifted left, one
    # workspace was never on any page that was read.
    honest = workspaces_api(250)

    def respond(request: httpx.Request) -> httpx.Response:
        response = honest(request)
        if request.url.params["page[number]"] == "2":
            document = json.loads(response.content)
            document["data"] = document["data"][1:]
            return httpx.Response(200, headers={"Date": DATE}, json=document)
        return response  # type: ignore[no-any-return]

    api.get("/organizations/acme/workspaces").mock(side_effect=respond)
    [observation] = await TfcSource(client, ["acme"], metrics).observe()
    assert observation.complete is False
    assert "249 items, not the total-count of 250" in (observation.error or "")
    assert observe_errors(metrics, "bad_response") == 1


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def test_a_deeply_nested_list_fails_its_organization_only(api, client, metrics):
    api.get("/organizations/good/workspaces").mock(side_effect=workspaces_api(3))
    api.get("/organizations/bomb/workspaces").respond(
        200,
        headers={"Content-Type": "application/vnd.api+json"},
        content=f'{{"data": {_nested(5000)}}}'.encode(),
    )
    observations = await TfcSource(client, ["good", "bomb"], metrics).observe()
    assert [(o.organization, o.complete) for o in observations] == [
        ("good", True),
        ("bomb", False),
    ]
    assert observations[1].error_reason == "bad_response"
    assert observe_errors(metrics, "bad_response") == 1


def _with_deep_value(entry: dict[str, Any], field: str, depth: int) -> str:
    """A one-entry list page whose `field` (of the entry, or of its attributes) is `depth`
    levels of nested lists, as raw JSON (json.dumps cannot write it)."""
    marker = "__deep__"
    if field in entry:
        entry = {**entry, field: marker}
    else:
        entry = {**entry, "attributes": {**entry["attributes"], field: marker}}
    raw = json.dumps({"data": [entry], "meta": {"pagination": {"total-count": 1}}})
    return raw.replace(f'"{marker}"', _nested(depth))


@pytest.mark.parametrize("field", ["name", "locked", "type"])
async def test_a_value_nested_too_deep_to_repr_is_a_bad_page_not_a_crash(
    api, client, metrics, field
):
    # 990 levels: orjson decodes it (its limit is 1,024), but repr() of it, which the error
    # message of a malformed field makes, exceeds the interpreter's recursion limit.
    raw = _with_deep_value(workspace(1), field, 990)
    api.get("/organizations/acme/workspaces").respond(
        200, headers={"Content-Type": "application/vnd.api+json"}, content=raw.encode()
    )
    [observation] = await TfcSource(client, ["acme"], metrics).observe()
    assert observation.complete is False
    assert observation.error_reason == "bad_response"


async def test_read_workspace_with_a_value_nested_too_deep_raises_bad_response(
    api, client, metrics
):
    document = json.loads(_with_deep_value(workspace(1), "name", 990).replace(_nested(990), "0"))
    raw = json.dumps({"data": document["data"][0]}).replace('"name": 0', f'"name": {_nested(990)}')
    api.get("/workspaces/ws-1").respond(
        200, headers={"Content-Type": "application/vnd.api+json", **DATED}, content=raw.encode()
    )
    with pytest.raises(SourceError, match="nested too deeply") as caught:
        await TfcSource(client, ["acme"], metrics).read_workspace("ws-1", "acme")
    assert isinstance(caught.value.__cause__, BadResponseError)


NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
HOUR = 3600.0


def _every_kind_of_workspace() -> list[Workspace]:
    """Locked by each holder type, or not, times every kind of current run (or none)."""
    statuses = ["applying", "planning", "plan_queued", "pending", "planned", "teleporting"]
    statuses += ["applied", "errored", "canceled", "discarded", "planned_and_finished"]
    runs: list[Run | None] = [None]
    for n, status in enumerate(statuses):
        for hours in (1, 30):
            runs.append(
                Run(
                    id=f"run-{n}-{hours}",
                    status=status,
                    created_at=datetime.fromtimestamp(NOW.timestamp() - hours * HOUR, UTC),
                    actions=RunActions(True, True, True, True),
                )
            )
    holders: list[Holder | None] = [None, ALICE, PLATFORM]
    workspaces = []
    for r_index, current in enumerate(runs):
        # A lock with no user or team holder and a current run is that run's.
        by_run = None if current is None else run_holder(current)
        for h_index, holder in enumerate(holders):
            for locked in (False, True):
                if holder is not None and not locked:
                    continue
                workspaces.append(
                    Workspace(
                        organization="acme",
                        id=f"ws-{r_index}-{h_index}-{locked}",
                        name=f"w-{r_index}-{h_index}-{locked}",
                        locked=locked,
                        holder=by_run if holder is None and locked else holder,
                        current_run=current,
                    )
                )
    return workspaces


@pytest.mark.parametrize("complete", [True, False])
def test_decide_and_memory_see_the_same_in_the_kept_workspaces_as_in_all(complete):
    every = _every_kind_of_workspace()
    kept = tuple(ws for ws in every if worth_keeping(ws))
    assert 0 < len(kept) < len(every)
    full = Observation(Source.TFC, "acme", NOW, workspaces=tuple(every), complete=complete)
    filtered = Observation(
        Source.TFC,
        "acme",
        NOW,
        workspaces=kept,
        complete=complete,
        listed_ids=frozenset(ws.id for ws in every),
    )
    config = policy(defaults={"actions": ["cancel", "force_cancel", "discard", "force_unlock"]})
    memories = []
    for observation in (full, filtered):
        memory = Memory(clock=FakeClock())  # the same sighting times on both sides
        # A lock on a workspace now read unlocked: dropped even after a partial read.
        gone = Observation(
            Source.TFC,
            "acme",
            NOW,
            workspaces=(
                Workspace(
                    "acme", every[0].id, "w", locked=True, holder=Holder(HolderType.USER, "user-9")
                ),
            ),
        )
        memory.update([gone], NOW)
        memory.update([observation], NOW)
        memory.update([observation], NOW)
        memories.append(memory)
    assert memories[0].first_seen(every[0].id, "user-9") is None
    assert memories[1].first_seen(every[0].id, "user-9") is None
    assert memories[0]._to_document() == memories[1]._to_document()
    later = datetime.fromtimestamp(NOW.timestamp() + 48 * HOUR, UTC)
    assert decide([full], config, memories[0], later) == decide(
        [filtered], config, memories[1], later
    )
    # The comparison has teeth: there is something to act on (or, after a partial read, to
    # say why not).
    decision = decide([filtered], config, memories[1], later)
    assert decision.planned if complete else decision.restraints


# --- read_workspace and identity ------------------------------------------------------------


def single_workspace(organization: str | None = "acme") -> dict[str, Any]:
    relationships: dict[str, Any] = {
        "locked-by": {"data": {"type": "teams", "id": "team-1"}},
    }
    if organization:
        relationships["organization"] = {"data": {"type": "organizations", "id": organization}}
    return {
        "data": {
            "id": "ws-1",
            "type": "workspaces",
            "attributes": {"name": "net", "locked": True, "locked-reason": "maintenance"},
            "relationships": relationships,
        },
        "included": [{"type": "teams", "id": "team-1", "attributes": {"name": "platform"}}],
    }


async def test_read_workspace_is_a_fresh_get_with_includes(api, client, metrics):
    route = api.get("/workspaces/ws-1").respond(200, json=single_workspace(), headers=DATED)
    ws = await TfcSource(client, ["acme"], metrics).read_workspace("ws-1", "acme")
    assert route.calls.last.request.url.params["include"] == "current_run,locked_by,project"
    assert ws.organization == "acme"
    assert ws.locked_reason == "maintenance"
    assert ws.holder == Holder(HolderType.TEAM, "team-1", "platform")


async def test_read_workspace_falls_back_to_the_organization_the_action_carries(
    api, client, metrics
):
    # No observe() first: the source keeps no map of workspaces to organizations.
    api.get("/workspaces/ws-1").respond(
        200, json=single_workspace(organization=None), headers=DATED
    )
    source = TfcSource(client, ["acme"], metrics)
    assert (await source.read_workspace("ws-1", "acme")).organization == "acme"


async def test_read_workspace_that_cannot_be_parsed_raises_bad_response(api, client, metrics):
    document = single_workspace()
    document["data"]["attributes"]["locked"] = None
    api.get("/workspaces/ws-1").respond(200, json=document, headers=DATED)
    with pytest.raises(SourceError) as caught:
        await TfcSource(client, ["acme"], metrics).read_workspace("ws-1", "acme")
    assert caught.value.reason == "bad_response"
    cause = caught.value.__cause__
    assert isinstance(cause, BadResponseError)
    assert cause.endpoint == "GET /workspaces/:id"
    assert metrics.registry.get_sample_value("tfc_watchdog_parse_errors_total") == 1


async def test_a_workspace_read_by_name_that_cannot_be_parsed_is_counted_not_logged(
    api, client, metrics
):
    document = single_workspace()
    document["data"]["attributes"]["locked"] = None
    api.get("/organizations/acme/workspaces/net").respond(200, json=document, headers=DATED)
    with capture_logs() as logs, pytest.raises(BadResponseError) as caught:
        await TfcSource(client, ["acme"], metrics).read_workspace_by_name("acme", "net")
    assert caught.value.endpoint == "GET /organizations/:org/workspaces/:name"
    assert "locked is None" in caught.value.detail
    assert metrics.registry.get_sample_value("tfc_watchdog_parse_errors_total") == 1
    # The commands that read by name print the error themselves; the re-read logs it.
    assert not [entry for entry in logs if entry["event"] == "tfc.parse_error"]


async def test_a_reread_that_cannot_be_parsed_is_logged_with_its_workspace_id(api, client, metrics):
    document = single_workspace()
    document["data"]["attributes"]["locked"] = None
    api.get("/workspaces/ws-1").respond(200, json=document, headers=DATED)
    with capture_logs() as logs, pytest.raises(SourceError):
        await TfcSource(client, ["acme"], metrics).read_workspace("ws-1", "acme")
    [entry] = [entry for entry in logs if entry["event"] == "tfc.parse_error"]
    assert entry["workspace_id"] == "ws-1"
    assert "locked is None" in entry["error"]


async def test_read_workspace_propagates_not_found(api, client, metrics):
    api.get("/workspaces/ws-1").respond(404)
    with pytest.raises(ForbiddenError, match="not found or not permitted"):
        await TfcSource(client, ["acme"], metrics).read_workspace("ws-1", "acme")


async def test_identity_of_a_user_token(api, client, metrics):
    api.get("/account/details").respond(
        200,
        json={"data": {"id": "user-1", "type": "users", "attributes": {"username": "bot"}}},
        headers=DATED,
    )
    assert await TfcSource(client, ["acme"], metrics).identity() == Holder(
        HolderType.USER, "user-1", "bot"
    )


async def test_identity_of_a_team_token_is_none(api, client, metrics):
    api.get("/account/details").respond(404)
    assert await TfcSource(client, ["acme"], metrics).identity() is None


async def test_identity_with_a_bad_token_raises(api, client, metrics):
    api.get("/account/details").respond(401)
    with pytest.raises(UnauthorizedError):
        await TfcSource(client, ["acme"], metrics).identity()


# --- actions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "action"),
    [
        ("cancel_run", "cancel"),
        ("force_cancel_run", "force-cancel"),
        ("discard_run", "discard"),
    ],
)
async def test_run_actions_post_once_with_a_plain_comment(api, client, metrics, method, action):
    route = api.post(f"/runs/run-1/actions/{action}").respond(202)
    await getattr(TfcSource(client, ["acme"], metrics), method)("run-1", "tfc-watchdog: stuck")
    assert route.call_count == 1
    request = route.calls.last.request
    assert json.loads(request.content) == {"comment": "tfc-watchdog: stuck"}
    assert request.headers["Content-Type"] == "application/vnd.api+json"
    assert (
        metrics.registry.get_sample_value(
            "tfc_watchdog_api_requests_total",
            {"endpoint": f"POST /runs/:id/actions/{action}", "code": "202"},
        )
        == 1
    )


@pytest.mark.parametrize(
    ("method", "action"),
    [("unlock_workspace", "unlock"), ("force_unlock_workspace", "force-unlock")],
)
async def test_unlocks_post_no_body_but_the_content_type(api, client, metrics, method, action):
    # 200 with the workspace document in the API's content type: what the API answers.
    route = api.post(f"/workspaces/ws-1/actions/{action}").respond(
        200, json=single_workspace(), headers={**DATED, "Content-Type": "application/vnd.api+json"}
    )
    await getattr(TfcSource(client, ["acme"], metrics), method)("ws-1")
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.content == b""
    assert request.headers["Content-Type"] == "application/vnd.api+json"


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(503),
        httpx.Response(
            400,
            json={"errors": [{"status": "400", "detail": "Latest state version is still pending"}]},
        ),
    ],
    ids=["503", "400-pending"],
)
async def test_unlock_while_state_version_pending_raises_retry_later(
    api, client, metrics, response
):
    route = api.post("/workspaces/ws-1/actions/unlock").mock(return_value=response)
    with pytest.raises(RetryLaterError) as caught:
        await TfcSource(client, ["acme"], metrics).unlock_workspace("ws-1")
    assert isinstance(caught.value.__cause__, TfcError)
    assert route.call_count == 1  # never retried: a POST


async def test_other_400_on_unlock_is_not_a_pending_state_version(api, client, metrics):
    api.post("/workspaces/ws-1/actions/unlock").respond(
        400, json={"errors": [{"status": 400, "detail": "bad request"}]}
    )
    with pytest.raises(SourceError) as caught:
        await TfcSource(client, ["acme"], metrics).unlock_workspace("ws-1")
    assert not isinstance(caught.value, RetryLaterError)
    assert not caught.value.may_have_acted  # a 4xx: refused, nothing was done
    cause = caught.value.__cause__
    assert isinstance(cause, TfcError)
    assert cause.status == 400


async def test_unlock_of_someone_elses_lock_is_a_conflict(api, client, metrics):
    detail = "Unable to unlock workspace. The workspace is locked by Team b4e6 and may not be"
    api.post("/workspaces/ws-1/actions/unlock").respond(
        409, json={"errors": [{"status": "409", "title": "conflict", "detail": detail}]}
    )
    with pytest.raises(ChangedError) as caught:
        await TfcSource(client, ["acme"], metrics).unlock_workspace("ws-1")
    assert "locked by Team" in str(caught.value)


async def test_cancel_without_permission_is_not_found(api, client, metrics):
    route = api.post("/runs/run-1/actions/cancel").respond(404)
    with pytest.raises(ForbiddenError):
        await TfcSource(client, ["acme"], metrics).cancel_run("run-1", "why")
    assert route.call_count == 1


async def test_now_is_the_servers_clock(api, client, metrics):
    api.get("/organizations/acme/workspaces").mock(side_effect=workspaces_api(1))
    source = TfcSource(client, ["acme"], metrics)
    await source.observe()
    assert source.now() == datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
