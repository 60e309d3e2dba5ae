"""The simulated world: organizations, principals and their tokens, workspaces, runs, locks.

All state changes go through `World` methods, which enforce the API's rules (a lock has one
holder; a non-final current run holds its workspace's lock; when it ends the lock is released
and the next pending run becomes current). Permission checks are the routes' job: the world
assumes the caller may do what it asks, so the admin API can reuse the same methods.

Lookups are dicts by id, and each organization keeps its workspaces pre-sorted by name, so a
page of the list costs O(page), not O(workspaces) (10,000 workspaces, < 50 ms).
"""

from __future__ import annotations

import bisect
import fnmatch
import heapq
import json
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from watchdog.simulator import runs as machine
from watchdog.simulator.access import RANK, Level
from watchdog.simulator.clock import SimClock
from watchdog.simulator.errors import ApiError, conflict

PrincipalKind = Literal["user", "team", "organization"]
# `locked-by` types (docs/tfc-api.md, "Workspaces"), plus the organization token, which has no
# documented representation: a workspace it locked shows `locked-by: {data: null}`.
HolderKind = Literal["users", "teams", "runs", "organization"]

_HOLDER_KIND: dict[PrincipalKind, HolderKind] = {
    "user": "users",
    "team": "teams",
    "organization": "organization",
}
_BASE62 = string.digits + string.ascii_letters
DEFAULT_COOLOFF = timedelta(minutes=5)
DEFAULT_APPLY_DURATION = timedelta(minutes=1)
# Spacing of the synthetic timestamps of the states a scenario run passed through.
_STEP = timedelta(seconds=30)


@dataclass
class Principal:
    """A user, a team, or an organization token: who a token acts as."""

    id: str
    kind: PrincipalKind
    name: str
    organization: str
    # (workspace-name glob, level); the first match wins; no match = no access.
    access: list[tuple[str, Level]] = field(default_factory=list)
    _ranks: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def is_organization_token(self) -> bool:
        return self.kind == "organization"

    @property
    def sees_every_workspace(self) -> bool:
        """True when one `*` rule grants access, so list pages need no visibility scan."""
        return bool(self.access) and self.access[0][0] == "*" and self.access[0][1] != "none"

    def rank(self, workspace: Workspace) -> int:
        if workspace.organization != self.organization:
            return 0
        cached = self._ranks.get(workspace.id)
        if cached is None:
            cached = next(
                (
                    RANK[lvl]
                    for glob, lvl in self.access
                    if fnmatch.fnmatchcase(workspace.name, glob)
                ),
                0,
            )
            self._ranks[workspace.id] = cached
        return cached


@dataclass
class Project:
    id: str
    name: str
    organization: str


@dataclass
class Run:
    id: str
    workspace_id: str
    status: str
    created_at: datetime
    status_timestamps: dict[str, datetime] = field(default_factory=dict)
    created_by: str | None = None
    message: str = "Triggered via API"
    # Its Terraform process ignores a cancel: only force-cancel ends it.
    hangs_on_cancel: bool = False
    # Once it becomes current (plan_queued), it reaches `applied` after this much time.
    duration: timedelta | None = None
    canceled_at: datetime | None = None
    force_cancel_available_at: datetime | None = None

    def enter(self, status: str, at: datetime) -> None:
        self.status = status
        self.status_timestamps[machine.timestamp_key(status)] = at


@dataclass
class Workspace:
    id: str
    name: str
    organization: str
    project_id: str
    created_at: datetime
    tags: list[str] = field(default_factory=list)
    execution_mode: str = "remote"
    locked_by: tuple[HolderKind, str] | None = None
    locked_reason: str = ""
    # Not in the API (no lock timestamp: docs/tfc-api.md, "Workspaces"); shown by /_sim/state only.
    locked_at: datetime | None = None
    current_run_id: str | None = None
    # Pending runs waiting behind the current run, oldest first.
    queue: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    # How many upcoming unlocks answer 503 "state version still pending" (docs/tfc-api.md,
    # "Lock, unlock and force-unlock").
    pending_state_version_unlocks: int = 0
    # The Terraform state (terraform_api.py): the id of the current (finalized) version.
    current_state_version_id: str | None = None
    # `latest-change-at`: when the latest state version was created (None: never).
    latest_change_at: datetime | None = None
    # `plan-duration-average` / `apply-duration-average` as a scenario sets them (None: null,
    # as for a workspace with no run history). Not derived from simulated runs.
    plan_duration_average: timedelta | None = None
    apply_duration_average: timedelta | None = None

    @property
    def locked(self) -> bool:
        return self.locked_by is not None


@dataclass
class StateVersion:
    """A Terraform state version: metadata from POST state-versions, then the blobs PUT."""

    id: str
    workspace_id: str
    serial: int
    md5: str
    lineage: str
    created_at: datetime
    created_by: str
    # Decoded `json-state-outputs`: {name: {"sensitive", "value", "type"}}.
    outputs: dict[str, dict[str, object]] = field(default_factory=dict)
    state: bytes | None = None
    json_state: bytes | None = None

    @property
    def finalized(self) -> bool:
        return self.state is not None


@dataclass
class Organization:
    name: str
    projects: dict[str, Project] = field(default_factory=dict)
    # Workspace names sorted, and the ids in the same order: the list endpoint's index.
    names: list[str] = field(default_factory=list)
    ordered_ids: list[str] = field(default_factory=list)
    by_name: dict[str, str] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)


class World:
    def __init__(
        self,
        clock: SimClock | None = None,
        *,
        seed: int = 1,
        cooloff: timedelta = DEFAULT_COOLOFF,
    ) -> None:
        self.clock = clock or SimClock()
        self.rng = random.Random(seed)
        self.cooloff = cooloff
        self.organizations: dict[str, Organization] = {}
        self.principals: dict[str, Principal] = {}
        self.tokens: dict[str, str] = {}
        self.workspaces: dict[str, Workspace] = {}
        self.runs: dict[str, Run] = {}
        self.state_versions: dict[str, StateVersion] = {}
        self._due: list[tuple[datetime, int, str]] = []
        self._seq = 0

    # --- building --------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return prefix + "".join(self.rng.choice(_BASE62) for _ in range(16))

    def now(self) -> datetime:
        return self.clock.now()

    def add_organization(self, name: str) -> Organization:
        return self.organizations.setdefault(name, Organization(name))

    def add_project(self, organization: str, name: str, project_id: str | None = None) -> Project:
        org = self.add_organization(organization)
        for project in org.projects.values():
            if project.name == name:
                return project
        project = Project(project_id or self.new_id("prj-"), name, organization)
        org.projects[project.id] = project
        return project

    def add_principal(
        self,
        kind: PrincipalKind,
        name: str,
        organization: str,
        access: list[tuple[str, Level]],
        *,
        tokens: Sequence[str] = (),
        principal_id: str | None = None,
    ) -> Principal:
        prefix = {"user": "user-", "team": "team-", "organization": "org-token-"}[kind]
        principal = Principal(principal_id or self.new_id(prefix), kind, name, organization, access)
        self.principals[principal.id] = principal
        for token in tokens:
            self.tokens[token] = principal.id
        return principal

    def add_workspace(
        self,
        organization: str,
        name: str,
        *,
        project: str = "Default Project",
        tags: list[str] | None = None,
        execution_mode: str = "remote",
        created_at: datetime | None = None,
        workspace_id: str | None = None,
    ) -> Workspace:
        org = self.add_organization(organization)
        if name in org.by_name:
            raise ValueError(f"workspace {organization}/{name} defined twice")
        workspace = Workspace(
            id=workspace_id or self.new_id("ws-"),
            name=name,
            organization=organization,
            project_id=self.add_project(organization, project).id,
            created_at=created_at or self.now() - timedelta(days=30),
            tags=list(tags or []),
            execution_mode=execution_mode,
        )
        self.workspaces[workspace.id] = workspace
        index = bisect.bisect_left(org.names, name)
        org.names.insert(index, name)
        org.ordered_ids.insert(index, workspace.id)
        org.by_name[name] = workspace.id
        return workspace

    def principal_by_name(self, organization: str, name: str) -> Principal:
        for principal in self.principals.values():
            if principal.organization == organization and principal.name == name:
                return principal
        raise KeyError(f"no user or team {name!r} in organization {organization!r}")

    # --- runs ------------------------------------------------------------------------------

    def add_run(
        self,
        workspace: Workspace,
        status: str = "planning",
        *,
        age: timedelta = timedelta(0),
        created_by: str | None = None,
        hangs_on_cancel: bool = False,
        duration: timedelta | None = None,
        message: str = "Triggered via API",
    ) -> Run:
        """Start a run that entered `status` `age` ago, placed as a real one would be.

        If the workspace is busy (a non-final current run, or a lock held by someone else),
        a non-final run waits in the queue as `pending` whatever status was asked for; a final
        one is history. The earlier states get synthetic timestamps 30 s apart.
        """
        now = self.now()
        busy = self._busy(workspace)
        if busy and not machine.is_final(status):
            status = "pending"
        path = machine.path_to(status)
        entered = now - age
        first = entered - _STEP * (len(path) - 1)
        run = Run(
            id=self.new_id("run-"),
            workspace_id=workspace.id,
            status=status,
            created_at=first,
            created_by=created_by,
            hangs_on_cancel=hangs_on_cancel,
            duration=duration,
            message=message,
        )
        for step, reached in enumerate(path):
            run.status_timestamps[machine.timestamp_key(reached)] = first + _STEP * step
        self.runs[run.id] = run
        workspace.run_ids.append(run.id)
        self.organizations[workspace.organization].run_ids.append(run.id)
        if machine.is_final(status):
            current = self.runs.get(workspace.current_run_id or "")
            if (current is None or machine.is_final(current.status)) and not workspace.queue:
                workspace.current_run_id = run.id
        elif busy:
            workspace.queue.append(run.id)
        else:
            workspace.current_run_id = run.id
            if status == "pending":
                self._advance_queue(workspace)
            else:
                self._hold(workspace, run)
        return run

    def set_run_status(self, run: Run, status: str) -> None:
        """Move a run as the platform would (admin API, scheduled completions)."""
        if machine.is_final(status):
            self._end_run(run, status)
            return
        run.enter(status, self.now())
        workspace = self.workspaces[run.workspace_id]
        if workspace.current_run_id == run.id and workspace.locked_by is None:
            self._hold(workspace, run)

    def cancel(self, run: Run) -> None:
        if not machine.is_cancelable(run.status):
            raise conflict("Run was not planning or applying; cancel not allowed.")
        now = self.now()
        run.canceled_at = now
        run.force_cancel_available_at = now + self.cooloff
        if not run.hangs_on_cancel:
            self._end_run(run, "canceled")

    def is_force_cancelable(self, run: Run) -> bool:
        return (
            not machine.is_final(run.status)
            and run.force_cancel_available_at is not None
            and self.now() >= run.force_cancel_available_at
        )

    def force_cancel(self, run: Run) -> None:
        if not self.is_force_cancelable(run):
            raise conflict(
                "Run was not planning or applying, has not been canceled non-forcefully, "
                "or the cool-off period has not yet passed."
            )
        self._end_run(run, "force_canceled")

    def discard(self, run: Run) -> None:
        if run.status not in machine.DISCARDABLE:
            raise conflict("Run was not paused for confirmation or priority; discard not allowed.")
        self._end_run(run, "discarded")

    def apply(self, run: Run) -> None:
        if run.status not in machine.CONFIRMABLE:
            raise conflict("Run was not paused for confirmation; apply not allowed.")
        now = self.now()
        for status in ("confirmed", "apply_queued", "applying"):
            run.enter(status, now)
        self._schedule(run, now + (run.duration or DEFAULT_APPLY_DURATION))

    def tick(self) -> None:
        """Carry out scheduled completions that are due on the simulated clock."""
        now = self.now()
        while self._due and self._due[0][0] <= now:
            _, _, run_id = heapq.heappop(self._due)
            run = self.runs.get(run_id)
            if run is not None and not machine.is_final(run.status):
                self._end_run(run, "applied")

    # --- locks -----------------------------------------------------------------------------

    def lock(self, workspace: Workspace, principal: Principal, reason: str = "") -> None:
        if workspace.locked_by is not None:
            raise conflict("Unable to lock workspace. The workspace is already locked.")
        kind = _HOLDER_KIND[principal.kind]
        workspace.locked_by = (kind, principal.id)
        workspace.locked_reason = reason
        workspace.locked_at = self.now()

    def holds_lock(self, workspace: Workspace, principal: Principal) -> bool:
        """True when `principal` itself (not a run) holds `workspace`'s lock."""
        return workspace.locked_by == (_HOLDER_KIND[principal.kind], principal.id)

    def unlock(self, workspace: Workspace, principal: Principal) -> None:
        """A holder's own unlock: 409 for someone else's lock, 503 while state is pending."""
        if workspace.locked_by is None:
            raise conflict("Unable to unlock workspace. The workspace is not locked.")
        kind, holder = workspace.locked_by
        if holder != principal.id:
            word = {"users": "User", "teams": "Team", "runs": "Run"}.get(kind, "Organization")
            raise conflict(
                f"Unable to unlock workspace. The workspace is locked by {word} {holder} "
                "and may not be unlocked except by them."
            )
        # The docs: a workspace cannot be unlocked until its latest state version is
        # finalized (force-unlock proceeds anyway: that is what can lose an upload).
        if self.pending_state_versions(workspace) or workspace.pending_state_version_unlocks > 0:
            workspace.pending_state_version_unlocks = max(
                0, workspace.pending_state_version_unlocks - 1
            )
            raise ApiError(
                503,
                "service unavailable",
                "Unable to unlock workspace: the latest state version is still pending.",
            )
        self.release(workspace)

    # --- state versions (terraform_api.py creates them; these serve the admin API) ----------

    def pending_state_versions(self, workspace: Workspace) -> list[StateVersion]:
        """Versions created for `workspace` whose state upload has not landed yet."""
        return [
            sv
            for sv in self.state_versions.values()
            if sv.workspace_id == workspace.id and not sv.finalized
        ]

    def add_state_version(self, workspace: Workspace, created_by: str) -> StateVersion:
        """A version as `POST /workspaces/:id/state-versions` leaves it: pending until its
        state is uploaded (`finalize_state_version`)."""
        current = self.state_versions.get(workspace.current_state_version_id or "")
        sv = StateVersion(
            id=self.new_id("sv-"),
            workspace_id=workspace.id,
            serial=current.serial + 1 if current else 1,
            md5="",
            lineage=current.lineage if current else self.new_id("lineage-"),
            created_at=self.now(),
            created_by=created_by,
        )
        self.state_versions[sv.id] = sv
        workspace.latest_change_at = sv.created_at
        return sv

    def finalize_state_version(self, sv: StateVersion, state: bytes | None = None) -> None:
        """The state upload lands: the version is finalized and becomes current."""
        if state is None:
            document = {
                "version": 4,
                "terraform_version": "1.5.0",
                "serial": sv.serial,
                "lineage": sv.lineage,
                "outputs": {},
                "resources": [],
            }
            state = json.dumps(document).encode()
        sv.state = state
        self.workspaces[sv.workspace_id].current_state_version_id = sv.id

    def force_unlock(self, workspace: Workspace) -> None:
        if workspace.locked_by is None:
            raise conflict("Unable to force-unlock workspace. The workspace is not locked.")
        self.release(workspace)

    def release(self, workspace: Workspace) -> None:
        """Clear any lock and let the next pending run start (admin unlock, run end)."""
        workspace.locked_by = None
        workspace.locked_reason = ""
        workspace.locked_at = None
        self._advance_queue(workspace)

    # --- internals -------------------------------------------------------------------------

    def _busy(self, workspace: Workspace) -> bool:
        current = self.runs.get(workspace.current_run_id or "")
        return workspace.locked_by is not None or (
            current is not None and not machine.is_final(current.status)
        )

    def _hold(self, workspace: Workspace, run: Run) -> None:
        workspace.locked_by = ("runs", run.id)
        workspace.locked_reason = ""
        workspace.locked_at = run.status_timestamps.get("plan-queued-at", self.now())

    def _schedule(self, run: Run, at: datetime) -> None:
        self._seq += 1
        heapq.heappush(self._due, (at, self._seq, run.id))

    def _end_run(self, run: Run, status: str) -> None:
        run.enter(status, self.now())
        workspace = self.workspaces[run.workspace_id]
        if run.id in workspace.queue:
            workspace.queue.remove(run.id)
        if workspace.locked_by == ("runs", run.id):
            workspace.locked_by = None
            workspace.locked_reason = ""
            workspace.locked_at = None
        if workspace.current_run_id == run.id:
            self._advance_queue(workspace)

    def _advance_queue(self, workspace: Workspace) -> None:
        """Start the next pending run if nothing holds the workspace (docs/tfc-api.md, "Runs")."""
        if workspace.locked_by is not None:
            return
        current = self.runs.get(workspace.current_run_id or "")
        if current is not None and not machine.is_final(current.status):
            if current.status != "pending":
                return
            run = current
        elif workspace.queue:
            run = self.runs[workspace.queue.pop(0)]
            workspace.current_run_id = run.id
        else:
            return
        now = self.now()
        run.enter("plan_queued", now)
        self._hold(workspace, run)
        if run.duration is not None:
            self._schedule(run, now + run.duration)
