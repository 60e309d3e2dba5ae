"""No unlock or force-unlock while a state version is pending, nor when that could not be
checked.

The same random worlds and the same real cycle as test_safety.py (see world.py), with state
uploads in flight: in each cycle, some workspaces get a state version that stays pending (as
a Terraform process creates one before its upload lands), created as the cycle's list is read
or just as act re-reads the workspace, and some have their pending versions finalized. And
the watchdog's pending-state-versions request itself fails now and then: 404, 500, a timeout,
a body that is not JSON, a version without a status.

The oracle judges every unlock and force-unlock POST that reached the simulator with its own
record: the world had no pending version of that workspace when the POST arrived, and the
last state-versions check of that workspace before it, in the same cycle and after its
re-read, was answered whole (not one of the failures this test injected).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from urllib.parse import parse_qs

import httpx
from hypothesis import event, given
from hypothesis import strategies as st

from tests.properties.profile import PROPERTY
from tests.properties.world import (
    _LIST,
    _WS_GET,
    _WS_POST,
    ORG,
    RUNGS,
    Case,
    Harness,
    Recorder,
    Trace,
    cases,
)

# A snapshot is a version created and uploaded at once: an intermediate state upload of a
# long CLI apply, a sign of life of the lock's holder (it moves `latest-change-at`).
UPLOADS = ("pending_at_list", "pending_at_reread", "finalize", "snapshot_at_list")
FAILURES = ("404", "500", "timeout", "not_json", "no_status")
_STATE_VERSIONS = "/api/v2/state-versions"


@dataclass(frozen=True)
class UploadCase(Case):
    # Per cycle, per workspace: what happens to its state uploads / to its check (None: none).
    uploads: tuple[tuple[str | None, ...], ...] = ()
    failures: tuple[tuple[str | None, ...], ...] = ()


_UNLOCK_RUNGS = ("unlock", "force_unlock")
_steps = st.sampled_from([120, 60, 150])
_uploads = st.sampled_from((None,) * 6 + UPLOADS)
_failures = st.sampled_from((None,) * 2 * len(FAILURES) + FAILURES)


@st.composite
def upload_cases(draw: st.DrawFn) -> UploadCase:
    base = draw(cases(dry_run=False, max_cycles=4))
    count = len(base.workspaces)
    # Locks age only across continuous observation (at most 150 s between reads of the
    # worlds' 60 s interval): steps within it, so that locks come of age within a few cycles.
    cycles = tuple(replace(c, advance=draw(_steps)) for c in base.cycles)
    base = replace(base, cycles=cycles, lock_stale_after=60, fast_lock_stale_after=1)

    def per_cycle(values: st.SearchStrategy[str | None]) -> tuple[tuple[str | None, ...], ...]:
        return tuple(tuple(draw(values) for _ in range(count)) for _ in base.cycles)

    values = {f.name: getattr(base, f.name) for f in fields(base)}
    # Every rule may unlock, so that most examples come to the check.
    for key in ("default_actions", "fast_actions"):
        values[key] = tuple(r for r in RUNGS if r in values[key] or r in _UNLOCK_RUNGS)
    return UploadCase(**values, uploads=per_cycle(_uploads), failures=per_cycle(_failures))


@dataclass
class Check:
    cycle: int
    event_index: int
    workspace_id: str
    answered: bool  # False: this test made the check fail


@dataclass
class UploadTrace:
    checks: list[Check] = field(default_factory=list)
    # index in Trace.events of each unlock POST -> pending versions of its workspace then
    pending_at_post: dict[int, int] = field(default_factory=dict)
    # cycle -> workspace id -> its latest state version's creation time at the list read
    changed_at: dict[int, dict[str, datetime | None]] = field(default_factory=dict)


class UploadingRecorder(Recorder):
    """The recording transport of world.py, which also starts and lands state uploads and
    fails state-versions checks as the case says."""

    uploads = UploadTrace()

    def begin(self, trace: object) -> None:  # type: ignore[override]
        super().begin(trace)  # type: ignore[arg-type]
        self.uploads = UploadTrace()

    def _plan(self, table: tuple[tuple[str | None, ...], ...], ws_id: str) -> str | None:
        return dict(zip(self.trace.ids, table[self.cycle], strict=True)).get(ws_id)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        case = self.trace.case
        assert isinstance(case, UploadCase)
        world, path = self._sim.world, request.url.path
        if request.method == "GET" and _LIST.search(path):
            for ws_id in self.trace.ids:
                upload = self._plan(case.uploads, ws_id)
                ws = world.workspaces[ws_id]
                if upload == "pending_at_list":
                    world.add_state_version(ws, "user-writer")
                elif upload == "finalize":
                    for sv in world.pending_state_versions(ws):
                        world.finalize_state_version(sv)
                elif upload == "snapshot_at_list":
                    world.finalize_state_version(world.add_state_version(ws, "user-writer"))
            self.uploads.changed_at[self.cycle] = {
                ws_id: world.workspaces[ws_id].latest_change_at for ws_id in self.trace.ids
            }
        elif request.method == "GET" and (match := _WS_GET.search(path)):
            if self._plan(case.uploads, match[1]) == "pending_at_reread":
                world.add_state_version(world.workspaces[match[1]], "user-writer")
        elif request.method == "GET" and path == _STATE_VERSIONS:
            name = parse_qs(request.url.query.decode())["filter[workspace][name]"][0]
            ws_id = world.organizations[ORG].by_name[name]
            failure = self._plan(case.failures, ws_id)
            self.uploads.checks.append(
                Check(self.cycle, len(self.trace.events), ws_id, answered=failure is None)
            )
            self.trace.events.append(f"check:{ws_id}")
            if failure is not None:
                return _failed(request, failure)
        elif (
            request.method == "POST"
            and (match := _WS_POST.search(path))
            and match[2] in ("unlock", "force-unlock")
        ):
            pending = len(world.pending_state_versions(world.workspaces[match[1]]))
            self.uploads.pending_at_post[len(self.trace.events)] = pending
        return await super().handle_async_request(request)


def _failed(request: httpx.Request, failure: str) -> httpx.Response:
    headers = {"Content-Type": "application/vnd.api+json"}
    match failure:
        case "404" | "500":
            return httpx.Response(int(failure), headers=headers, json={"errors": []})
        case "timeout":
            raise httpx.ReadTimeout("injected", request=request)
        case "not_json":
            return httpx.Response(200, headers=headers, content=b"<html>proxy</html>")
        case "no_status":
            body = {"data": [{"id": "sv-x", "type": "state-versions", "attributes": {}}]}
            return httpx.Response(200, headers=headers, json=body)
    raise AssertionError(failure)


# How this module's shared `harness` (tests/properties/conftest.py) records.
RECORDER = UploadingRecorder


@PROPERTY
@given(upload_cases())
def test_no_unlock_while_an_upload_is_pending_unchecked_or_recent(
    harness: Harness, case: UploadCase
) -> None:
    """One simulation per example, judged by both invariants below."""
    trace = harness.run(case)
    recorder = harness.recorder
    assert isinstance(recorder, UploadingRecorder)
    no_unlock_while_a_state_version_is_pending_or_the_check_failed(trace, recorder)
    no_unlock_of_a_lock_whose_workspace_showed_activity_within_its_threshold(case, trace, recorder)


def no_unlock_while_a_state_version_is_pending_or_the_check_failed(
    trace: Trace, recorder: UploadingRecorder
) -> None:
    uploads = recorder.uploads
    unlocks = [p for p in trace.posts if p.kind in ("unlock", "force-unlock")]
    held = sum(
        1
        for cycle_results in trace.results
        for r in cycle_results
        if "state upload pending" in r.detail or "could not be checked" in r.detail
    )
    event(f"unlock POSTs: {min(len(unlocks), 2)}{'+' if len(unlocks) >= 2 else ''}")
    event(f"unlocks held back by the check: {min(held, 2)}{'+' if held >= 2 else ''}")
    for post in unlocks:
        at = trace.post_index(post)
        # The recorder notes the pending count just before the POST's own event.
        assert uploads.pending_at_post[at] == 0, post
        rereads = [
            index
            for cycle, index, snapshot in trace.rereads
            if cycle == post.cycle and snapshot.workspace_id == post.workspace_id and index < at
        ]
        checks = [
            check
            for check in uploads.checks
            if check.cycle == post.cycle
            and check.workspace_id == post.workspace_id
            and check.event_index < at
        ]
        assert rereads and checks, post
        last = checks[-1]
        assert last.answered, post
        # The check follows a re-read that still justified the unlock, and the holder is read
        # once more after the check: force-unlock has no holder condition, so that read is
        # the POST's last request.
        assert rereads[0] < last.event_index < rereads[-1], post


def no_unlock_of_a_lock_whose_workspace_showed_activity_within_its_threshold(
    case: UploadCase, trace: Trace, recorder: UploadingRecorder
) -> None:
    """A state version created while a user/team lock was held (its workspace's
    `latest-change-at` moved after the lock was first seen) is a sign of life: no unlock
    until the lock has been quiet for its `lock_stale_after`."""
    spared = 0
    for post in trace.posts:
        if post.kind not in ("unlock", "force-unlock") or post.before.holder is None:
            continue
        changed = recorder.uploads.changed_at[post.cycle][post.workspace_id]
        first_seen = trace.first_seen[post.cycle].get((post.workspace_id, post.before.holder[1]))
        if changed is None or first_seen is None or changed <= first_seen:
            continue
        _, threshold = case.rule_of(post.before.tags)
        assert post.at - changed > timedelta(seconds=threshold), post
        spared += 1
    event(f"unlocks after activity, past the threshold: {min(spared, 1)}")
