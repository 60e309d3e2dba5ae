"""Protection fails closed: a workspace whose protection-relevant fields arrive missing or
malformed is never acted on.

The same random worlds and the same real cycle as test_safety.py (see world.py), with one
more hostile turn: in each cycle's list read and in each act re-read, some workspaces come
back with a field that protection, rule matching or acting depends on removed or of the
wrong type (`tag-names` gone or a string, `locked-reason` gone or a number, `permissions`
gone or a string, the holder of a locked workspace gone, the project relationship gone or
naming a project the response does not include). The policy protects a tag, protects lock
reasons and has a rule that matches projects, so every one of these fields matters. Each POST
that reached the simulator is judged against what the watchdog was actually sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

import httpx
from hypothesis import event, given
from hypothesis import strategies as st

from tests.properties.profile import PROPERTY
from tests.properties.world import _LIST, _WS_GET, Case, Harness, Recorder, Snapshot, cases

# What a damaged entry looks like, and whether it matters for a workspace that is (not)
# locked: a missing lock reason or holder only matters on a locked workspace.
DAMAGE = (
    "tags_missing",
    "tags_string",
    "tags_null",
    "reason_missing",
    "reason_number",
    "permissions_missing",
    "permissions_string",
    "holder_missing",
    "project_missing",
    "project_not_included",
)
_ONLY_WHEN_LOCKED = frozenset({"reason_missing", "holder_missing"})


def relevant(damage: str | None, snapshot: Snapshot) -> bool:
    """Does this damage hide something the policy needs, for the workspace as it was?"""
    if damage is None:
        return False
    return damage not in _ONLY_WHEN_LOCKED or snapshot.holder is not None


@dataclass(frozen=True)
class DamagedCase(Case):
    # Per cycle, per workspace: the damage done to its list entry / its re-read (None: none).
    damage: tuple[tuple[str | None, ...], ...] = ()
    damage_reread: tuple[tuple[str | None, ...], ...] = ()

    def policy_document(self, state_file: str) -> dict[str, Any]:
        document = super().policy_document(state_file)
        # A rule that reads projects (it matches none of the simulator's), so that a missing
        # or unreadable project is a field rule matching depends on.
        document["rules"] = [
            {"id": "core", "match": {"projects": ["core-*"]}, "actions": []},
            *document["rules"],
        ]
        return document


# Half of the workspaces of a cycle are damaged, so most examples still reach a POST.
_damages = st.sampled_from((None,) * len(DAMAGE) + DAMAGE)


@st.composite
def damaged_cases(draw: st.DrawFn) -> DamagedCase:
    base = draw(cases(dry_run=False))
    count = len(base.workspaces)

    def per_cycle() -> tuple[tuple[str | None, ...], ...]:
        return tuple(tuple(draw(_damages) for _ in range(count)) for _ in base.cycles)

    values = {f.name: getattr(base, f.name) for f in fields(base)}
    return DamagedCase(**values, damage=per_cycle(), damage_reread=per_cycle())


def _damage(entry: dict[str, Any], damage: str) -> None:
    attributes = entry["attributes"]
    relationships = entry.setdefault("relationships", {})
    match damage:
        case "tags_missing":
            attributes.pop("tag-names", None)
        case "tags_string":
            attributes["tag-names"] = "protected"
        case "tags_null":
            attributes["tag-names"] = None
        case "reason_missing":
            attributes.pop("locked-reason", None)
        case "reason_number":
            attributes["locked-reason"] = 7
        case "permissions_missing":
            attributes.pop("permissions", None)
        case "permissions_string":
            attributes["permissions"] = "all"
        case "holder_missing":
            relationships["locked-by"] = {"data": None}
        case "project_missing":
            relationships.pop("project", None)
        case "project_not_included":
            relationships["project"] = {"data": {"type": "projects", "id": "prj-not-included"}}
        case _:
            raise AssertionError(damage)


class DamagingRecorder(Recorder):
    """The recording transport of world.py, which also damages entries as the case says."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        case = self.trace.case
        if not isinstance(case, DamagedCase) or response.status_code != 200:
            return response
        path = request.url.path
        ids = self.trace.ids
        if request.method == "GET" and _LIST.search(path):
            plan = dict(zip(ids, case.damage[self.cycle], strict=True))
        elif request.method == "GET" and (match := _WS_GET.search(path)):
            reread = dict(zip(ids, case.damage_reread[self.cycle], strict=True))
            plan = {match[1]: reread.get(match[1])}
        else:
            return response
        if not any(plan.values()):
            return response
        body = json.loads(await response.aread())
        entries = body["data"] if isinstance(body["data"], list) else [body["data"]]
        for entry in entries:
            damage = plan.get(entry.get("id"))
            if damage is not None and isinstance(entry.get("attributes"), dict):
                _damage(entry, damage)
        return httpx.Response(
            response.status_code,
            headers={k: v for k, v in response.headers.items() if k.lower() != "content-length"},
            content=json.dumps(body).encode(),
        )


# How this module's shared `harness` (tests/properties/conftest.py) records.
RECORDER = DamagingRecorder


@PROPERTY
@given(damaged_cases())
def test_a_workspace_with_missing_or_malformed_policy_fields_is_never_acted_on(
    harness: Harness, case: DamagedCase
) -> None:
    trace = harness.run(case)
    index = {ws_id: i for i, ws_id in enumerate(trace.ids)}
    event(f"POSTs sent: {min(len(trace.posts), 3)}{'+' if len(trace.posts) >= 3 else ''}")
    for post in trace.posts:
        i = index[post.workspace_id]
        listed = trace.observed[post.cycle][post.workspace_id]
        damage = case.damage[post.cycle][i]
        assert not relevant(damage, listed), (damage, post)
        rereads = [
            snapshot
            for cycle, _, snapshot in trace.rereads
            if cycle == post.cycle and snapshot.workspace_id == post.workspace_id
        ]
        damage_reread = case.damage_reread[post.cycle][i]
        # The POST's own re-read is the last of its workspace in its cycle.
        assert rereads, post
        assert not relevant(damage_reread, rereads[-1]), (damage_reread, post)
        event(f"POST despite harmless damage: {damage or damage_reread}")
