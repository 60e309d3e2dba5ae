"""parse.py: JSON:API workspace documents -> domain types, tolerant where the API varies."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from watchdog.model import HolderType, Run
from watchdog.sources.tfc.client import BadResponseError
from watchdog.sources.tfc.parse import parse_workspace_document, parse_workspace_page

FIXTURES = Path(__file__).parent / "fixtures" / "tfc"
ORG = "my-organization"


def sample() -> dict[str, Any]:
    """A sample workspace as the API documents it, with its included objects."""
    data: dict[str, Any] = json.loads((FIXTURES / "workspace.json").read_text())
    return data


def workspace_entry(
    ws_id: str,
    *,
    locked: bool = False,
    locked_by: tuple[str, str] | None = None,
    run: str | None = None,
    **attributes: Any,
) -> dict[str, Any]:
    # A complete entry: every field protection and rule matching read is present.
    relationships: dict[str, Any] = {"project": {"data": None}}
    if locked_by is not None:
        relationships["locked-by"] = {"data": {"type": locked_by[0], "id": locked_by[1]}}
    if run is not None:
        relationships["current-run"] = {"data": {"type": "runs", "id": run}}
    return {
        "id": ws_id,
        "type": "workspaces",
        "attributes": {
            "name": f"name-{ws_id}",
            "locked": locked,
            "locked-reason": "",
            "tag-names": [],
            "permissions": {},
            **attributes,
        },
        "relationships": relationships,
    }


def run_resource(run_id: str, status: str, **attributes: Any) -> dict[str, Any]:
    return {
        "id": run_id,
        "type": "runs",
        "attributes": {"status": status, "created-at": "2026-01-01T00:00:00.000Z", **attributes},
    }


def page(*entries: Any, included: list[Any] | None = None) -> dict[str, Any]:
    return {"data": list(entries), "included": included or []}


def run_page(status: str, **attributes: Any) -> dict[str, Any]:
    """A page of ws-1 whose current run, run-1, is included in `status` with `attributes`."""
    return page(
        workspace_entry("ws-1", run="run-1"),
        included=[run_resource("run-1", status, **attributes)],
    )


def parsed_run(status: str, **attributes: Any) -> Run:
    """ws-1's current run as parsed from `run_page(status, **attributes)`, which must read
    without an error."""
    [ws], unreadable, errors = parse_workspace_page(run_page(status, **attributes), ORG)
    assert (unreadable, errors) == ([], 0)
    assert ws.current_run is not None
    return ws.current_run


# --- the reference sample -------------------------------------------------------------------


def test_reference_sample_parses_every_field():
    ws = parse_workspace_document(sample(), "fallback-org")
    assert ws.organization == ORG  # from the organization relationship
    assert ws.id == "ws-6jrRyVDv1J8zQMB5"
    assert ws.name == "workspace-1"
    assert ws.lock_id == "my-organization/workspace-1"
    assert ws.tags == ("prod", "network")
    assert ws.locked is True
    assert ws.locked_reason is None
    assert ws.holder is not None
    assert (ws.holder.type, ws.holder.id, ws.holder.name) == (
        HolderType.USER,
        "user-hjy7ndEkmCtn31ps",
        "alice",
    )
    assert (ws.project_id, ws.project_name) == ("prj-hjy7ndEkmCtn31ps", "Default Project")
    perms = ws.permissions
    assert (perms.can_lock, perms.can_unlock, perms.can_force_unlock, perms.can_queue_run) == (
        True,
        True,
        True,
        True,
    )
    run = ws.current_run
    assert run is not None
    assert run.id == "run-hjy7ndEkmCtn31ps"
    assert run.status == "applied"
    assert run.created_at == datetime(2021, 5, 24, 7, 38, 4, 171000, tzinfo=UTC)
    assert run.status_timestamps["applied-at"] == datetime(2021, 5, 24, 7, 45, 10, tzinfo=UTC)
    assert run.entered_status_at() == datetime(2021, 5, 24, 7, 45, 10, tzinfo=UTC)
    assert run.actions.is_cancelable is True
    assert run.actions.is_force_cancelable is False
    assert (run.permissions.can_cancel, run.permissions.can_force_cancel) == (True, True)
    assert (run.permissions.can_discard, run.permissions.can_apply) == (True, True)
    assert run.canceled_at is None
    assert run.force_cancel_available_at is None


def test_document_without_organization_relationship_uses_the_given_one():
    doc = sample()
    del doc["data"]["relationships"]["organization"]
    assert parse_workspace_document(doc, "acme").organization == "acme"


def test_unreadable_single_document_is_a_bad_response():
    doc = sample()
    doc["data"]["attributes"]["locked"] = "yes"
    with pytest.raises(BadResponseError) as caught:
        parse_workspace_document(doc, ORG)
    assert "ws-6jrRyVDv1J8zQMB5" in str(caught.value)


def test_document_without_data_object_is_a_bad_response():
    with pytest.raises(BadResponseError):
        parse_workspace_document({"data": []}, ORG)


# --- holders --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "attributes", "holder_type", "name"),
    [
        ("users", {"username": "alice"}, HolderType.USER, "alice"),
        ("teams", {"name": "platform"}, HolderType.TEAM, "platform"),
        (
            "runs",
            {"status": "applying", "created-at": "2026-01-01T00:00:00Z"},
            HolderType.RUN,
            "applying",
        ),
    ],
)
def test_locked_by_resolves_each_holder_type_from_included(kind, attributes, holder_type, name):
    doc = page(
        workspace_entry("ws-1", locked=True, locked_by=(kind, "h-1")),
        included=[{"type": kind, "id": "h-1", "attributes": attributes}],
    )
    [ws], unreadable, errors = parse_workspace_page(doc, ORG)
    assert ws.holder is not None
    assert (ws.holder.type, ws.holder.id, ws.holder.name) == (holder_type, "h-1", name)
    assert (unreadable, errors) == ([], 0)


def test_holder_not_included_keeps_its_id_without_a_name():
    doc = page(workspace_entry("ws-1", locked=True, locked_by=("teams", "team-9")))
    [ws], _, _ = parse_workspace_page(doc, ORG)
    assert ws.holder is not None
    assert (ws.holder.type, ws.holder.id, ws.holder.name) == (HolderType.TEAM, "team-9", None)
    assert ws.holder.label() == "team:team-9"


def test_locked_by_absent_or_null_means_no_holder_a_parse_problem_when_locked():
    absent = workspace_entry("ws-1", locked=True)
    null = workspace_entry("ws-2", locked=True)
    null["relationships"]["locked-by"] = {"data": None}
    unlocked = workspace_entry("ws-3")
    workspaces, unreadable, errors = parse_workspace_page(page(absent, null, unlocked), ORG)
    assert [ws.holder for ws in workspaces] == [None, None, None]
    assert [ws.locked for ws in workspaces] == [True, True, False]
    no_holder = (("locked-by", "locked, but locked-by names no holder"),)
    assert [ws.problems for ws in workspaces] == [no_holder, no_holder, ()]
    assert (unreadable, errors) == ([], 2)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda e: e["attributes"].pop("tag-names"), ("tag-names", "tag-names missing")),
        (
            lambda e: e["attributes"].update({"tag-names": "protected"}),
            ("tag-names", "tag-names is a str, not a list"),
        ),
        (
            lambda e: e["attributes"].update({"tag-names": None}),
            ("tag-names", "tag-names is a null, not a list"),
        ),
        (
            lambda e: e["attributes"].update({"tag-names": ["ok", 7]}),
            ("tag-names", "tag-names holds a value that is not a string"),
        ),
        (
            lambda e: e["attributes"].pop("locked-reason"),
            ("locked-reason", "locked-reason missing"),
        ),
        (
            lambda e: e["attributes"].update({"locked-reason": ["maintenance"]}),
            ("locked-reason", "locked-reason is a list, not a string"),
        ),
        (
            lambda e: e["attributes"].pop("permissions"),
            ("permissions", "permissions missing, not an object"),
        ),
        (
            lambda e: e["attributes"].update({"permissions": "all"}),
            ("permissions", "permissions a str, not an object"),
        ),
        (
            lambda e: e["attributes"].update({"permissions": {"can-force-unlock": "yes"}}),
            ("permissions", "permissions can-force-unlock not true/false"),
        ),
        (
            lambda e: e["relationships"].pop("project"),
            ("project", "project relationship missing"),
        ),
        (
            lambda e: e["relationships"].update(
                {"project": {"data": {"type": "projects", "id": "prj-1"}}}
            ),
            ("project", "project prj-1 name not included"),
        ),
    ],
)
def test_a_missing_or_malformed_policy_field_is_recorded_and_counted(change, problem):
    entry = workspace_entry("ws-1", locked=True, locked_by=("users", "user-1"))
    change(entry)
    [ws], unreadable, errors = parse_workspace_page(page(entry), ORG)
    assert ws.problems == (problem,)
    assert (unreadable, errors) == ([], 1)


def test_null_or_empty_locked_reason_and_a_null_project_are_no_problem():
    for reason in (None, ""):
        entry = workspace_entry("ws-1", locked=True, locked_by=("users", "user-1"))
        entry["attributes"]["locked-reason"] = reason
        [ws], _, errors = parse_workspace_page(page(entry), ORG)
        assert (ws.problems, errors, ws.locked_reason) == ((), 0, None)


def test_unlocked_workspace_has_no_holder_even_if_locked_by_is_sent():
    doc = page(workspace_entry("ws-1", locked=False, locked_by=("users", "user-1")))
    [ws], _, _ = parse_workspace_page(doc, ORG)
    assert ws.holder is None


def test_unknown_holder_type_makes_the_entry_unreadable():
    doc = page(workspace_entry("ws-1", locked=True, locked_by=("robots", "r-1")))
    assert parse_workspace_page(doc, ORG) == ([], ["ws-1"], 1)


# --- locked-reason, tags, permissions -------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({}, None),
        ({"locked-reason": None}, None),
        ({"locked-reason": ""}, None),
        ({"locked-reason": "Locked by Terraform"}, "Locked by Terraform"),
    ],
    ids=["missing", "null", "empty", "text"],
)
def test_locked_reason_missing_null_or_empty_reads_as_none(attributes, expected):
    [ws], _, _ = parse_workspace_page(page(workspace_entry("ws-1", locked=True, **attributes)), ORG)
    assert ws.locked_reason == expected


def test_missing_permissions_and_tags_read_as_nothing_allowed():
    [ws], _, _ = parse_workspace_page(page(workspace_entry("ws-1")), ORG)
    assert ws.tags == ()
    assert not any(
        (
            ws.permissions.can_lock,
            ws.permissions.can_unlock,
            ws.permissions.can_force_unlock,
            ws.permissions.can_queue_run,
        )
    )


def test_only_literal_true_grants_a_permission():
    entry = workspace_entry(
        "ws-1", permissions={"can-force-unlock": "true", "can-unlock": 1, "can-lock": True}
    )
    [ws], _, _ = parse_workspace_page(page(entry), ORG)
    assert ws.permissions.can_lock is True
    assert ws.permissions.can_unlock is False
    assert ws.permissions.can_force_unlock is False


# --- runs -----------------------------------------------------------------------------------


def test_run_timestamps_accept_z_and_offset_forms_and_nested_actions():
    run = run_resource(
        "run-1",
        "applying",
        **{
            "status-timestamps": {
                "plan-queued-at": "2026-01-01T00:01:00Z",
                "applying-at": "2026-01-01T02:00:00+00:00",
                "confirmed-at": None,
            },
            "canceled-at": "2026-01-01T03:00:00.123Z",
            "force-cancel-available-at": "2026-01-01T03:01:00+00:00",
            "actions": {"is-force-cancelable": True, "is-discardable": True},
            "permissions": {"can-force-cancel": True},
        },
    )
    doc = page(
        workspace_entry("ws-1", locked=True, locked_by=("runs", "run-1"), run="run-1"),
        included=[run],
    )
    [ws], _, _ = parse_workspace_page(doc, ORG)
    parsed = ws.current_run
    assert parsed is not None
    # Only the current status's timestamp is read (the others cost parse time and
    # nothing reads them).
    assert parsed.status_timestamps == {"applying-at": datetime(2026, 1, 1, 2, 0, tzinfo=UTC)}
    assert parsed.entered_status_at() == datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    assert parsed.canceled_at == datetime(2026, 1, 1, 3, 0, 0, 123000, tzinfo=UTC)
    assert parsed.force_cancel_available_at == datetime(2026, 1, 1, 3, 1, tzinfo=UTC)
    assert parsed.actions.is_force_cancelable is True
    assert parsed.actions.is_discardable is True
    assert parsed.actions.is_cancelable is False
    assert parsed.permissions.can_force_cancel is True
    assert ws.holder is not None
    assert ws.holder.name == "applying"


def test_only_the_current_status_timestamp_is_read_and_must_be_readable():
    other_garbage = {"plan-queued-at": "soon", "planning-at": "2026-01-01T01:00:00Z"}
    run = parsed_run("planning", **{"status-timestamps": other_garbage})
    assert run.entered_status_at() == datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
    current_garbage = run_page("planning", **{"status-timestamps": {"planning-at": "soon"}})
    assert parse_workspace_page(current_garbage, ORG)[1:] == (["ws-1"], 1)


def test_a_null_current_status_timestamp_leaves_the_run_age_unknown():
    run = parsed_run(
        "planning",
        **{"created-at": "2026-01-01T00:00:00Z", "status-timestamps": {"planning-at": None}},
    )
    assert run.status_timestamps == {}
    assert run.entered_status_at() is None


def test_a_pending_run_without_timestamps_entered_pending_when_it_was_created():
    run = parsed_run("pending", **{"created-at": "2026-01-01T00:00:00Z"})
    assert run.entered_status_at() == datetime(2026, 1, 1, tzinfo=UTC)


def test_non_utc_offsets_are_converted_to_utc():
    run = parsed_run("planning", **{"created-at": "2026-01-01T02:00:00+02:00"})
    assert run.created_at == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert run.created_at.utcoffset() is not None


def test_unknown_run_status_is_kept_and_treated_as_non_final():
    run = parsed_run("teleporting")
    assert run.status == "teleporting"
    assert run.is_final is False


def test_run_without_actions_or_permissions_allows_nothing():
    run = parsed_run("applying")
    assert run.actions.is_cancelable is False
    assert run.permissions.can_cancel is False
    assert run.status_timestamps == {}


def test_no_current_run_is_none():
    [ws], _, _ = parse_workspace_page(page(workspace_entry("ws-1")), ORG)
    assert ws.current_run is None


# --- malformed entries never fail the page --------------------------------------------------


def _run_with_bad_time() -> dict[str, Any]:
    return run_resource("run-bt", "applying", **{"status-timestamps": {"applying-at": "soon"}})


def _run_without_status() -> dict[str, Any]:
    run = run_resource("run-ns", "x")
    del run["attributes"]["status"]
    return run


BAD_INCLUDED = [_run_with_bad_time(), _run_without_status()]
BAD_ENTRIES: list[tuple[str, Any, str | None]] = [
    ("not-an-object", "ws-string", None),
    ("no-id", {"type": "workspaces", "attributes": {"name": "x"}}, None),
    ("no-attributes", {"id": "ws-na", "type": "workspaces"}, "ws-na"),
    ("no-name", {"id": "ws-nn", "type": "workspaces", "attributes": {}}, "ws-nn"),
    ("wrong-type", {"id": "ws-wt", "type": "runs", "attributes": {"name": "x"}}, "ws-wt"),
    ("locked-not-bool", workspace_entry("ws-lb", locked="yes"), "ws-lb"),
    ("run-not-included", workspace_entry("ws-ri", run="run-missing"), "ws-ri"),
    ("run-bad-timestamp", workspace_entry("ws-bt", run="run-bt"), "ws-bt"),
    ("run-no-status", workspace_entry("ws-ns", run="run-ns"), "ws-ns"),
    (
        "locked-by-malformed",
        {
            **workspace_entry("ws-lm", locked=True),
            "relationships": {"locked-by": {"data": ["users"]}},
        },
        "ws-lm",
    ),
]


@pytest.mark.parametrize(
    ("bad", "bad_id"),
    [(entry, bad_id) for _, entry, bad_id in BAD_ENTRIES],
    ids=[label for label, _, _ in BAD_ENTRIES],
)
def test_a_malformed_entry_is_skipped_counted_and_its_id_recorded(bad, bad_id):
    doc = page(copy.deepcopy(bad), workspace_entry("ws-good"), included=BAD_INCLUDED)
    workspaces, unreadable, errors = parse_workspace_page(doc, ORG)
    assert [ws.id for ws in workspaces] == ["ws-good"]
    assert unreadable == ([bad_id] if bad_id else [])
    assert errors == 1


def test_page_whose_data_is_not_a_list_is_a_bad_response():
    with pytest.raises(BadResponseError):
        parse_workspace_page({"data": {"id": "ws-1"}}, ORG)


def test_malformed_included_entries_are_ignored():
    doc = page(
        workspace_entry("ws-1", locked=True, locked_by=("users", "u-1")),
        included=["junk", {"type": "users"}, {"type": "users", "id": "u-1", "attributes": []}],
    )
    [ws], unreadable, errors = parse_workspace_page(doc, ORG)
    assert ws.holder is not None
    assert ws.holder.name is None
    assert (unreadable, errors) == ([], 0)


# --- plan/apply duration averages -------------------------------------------------------------


def test_duration_averages_are_milliseconds_and_absent_or_null_is_unknown():
    entry = workspace_entry(
        "ws-1", **{"plan-duration-average": 20000, "apply-duration-average": 158000.0}
    )
    [ws], _, errors = parse_workspace_page(page(entry), ORG)
    assert (ws.plan_duration_average, ws.apply_duration_average) == (
        timedelta(seconds=20),
        timedelta(seconds=158),
    )
    assert (ws.problems, errors) == ((), 0)
    for absent in ({}, {"plan-duration-average": None, "apply-duration-average": None}):
        [ws], _, errors = parse_workspace_page(page(workspace_entry("ws-1", **absent)), ORG)
        assert (ws.plan_duration_average, ws.apply_duration_average) == (None, None)
        assert (ws.problems, errors) == ((), 0)


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("158000", "apply-duration-average is a str, not a number"),
        (True, "apply-duration-average is a bool, not a number"),
        ([1], "apply-duration-average is a list, not a number"),
        (-1, "apply-duration-average is -1, not a duration in milliseconds"),
        (float("inf"), "apply-duration-average is inf, not a duration in milliseconds"),
        (float("nan"), "apply-duration-average is nan, not a duration in milliseconds"),
        (10**30, "not a duration in milliseconds"),
    ],
)
def test_a_malformed_duration_average_is_unknown_and_counted(value, detail):
    entry = workspace_entry("ws-1", locked=True, locked_by=("users", "user-1"))
    entry["attributes"]["apply-duration-average"] = value
    [ws], unreadable, errors = parse_workspace_page(page(entry), ORG)
    assert ws.apply_duration_average is None
    [(name, problem)] = ws.problems
    assert name == "apply-duration-average"
    assert detail in problem
    assert (unreadable, errors) == ([], 1)


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_timestamp_beyond_the_datetime_range_in_utc_is_unreadable_not_a_crash(moment):
    # Valid ISO 8601, but not representable once converted to UTC (OverflowError).
    doc = run_page("applying", **{"created-at": moment})
    assert parse_workspace_page(doc, ORG) == ([], ["ws-1"], 1)
    [ws], unreadable, errors = parse_workspace_page(
        page(workspace_entry("ws-2", **{"latest-change-at": moment})), ORG
    )
    assert (ws.latest_change_at, unreadable, errors) == (None, [], 1)
    assert ws.problems == (("latest-change-at", "latest-change-at is not ISO 8601"),)
