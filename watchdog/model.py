"""Plain domain types shared by every stage: observe -> decide -> act -> report.

Nothing here does I/O. Sources turn backend responses into these types; `decide` turns
them into findings and planned actions; `act.py` carries actions out; the report layer
(metrics, logs, `scan`, `/locks`) renders them.

All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal


class Source(StrEnum):
    """Where a lock lives. The value is the `source` label of the lock metrics (contract)."""

    TFC = "tfc"
    DYNAMODB = "dynamodb"
    S3 = "s3"
    GCS = "gcs"
    GITLAB = "gitlab"


class HolderType(StrEnum):
    """Who holds a lock. The value is the `holder_type` metric label (contract)."""

    USER = "user"
    TEAM = "team"
    RUN = "run"
    # A Terraform CLI lock in a backend store (DynamoDB item, S3 or GCS .tflock object) or in
    # GitLab-managed state.
    TERRAFORM = "terraform"


@dataclass(frozen=True, slots=True)
class Holder:
    type: HolderType
    id: str
    # The user name, team name or run status text when the API included it; else None.
    name: str | None = None

    def label(self) -> str:
        """`user:alice`, `team:platform`, `run:run-abc`: how reports show a holder."""
        if self.type is HolderType.RUN:  # a run's `name` is its status: the id says more
            return f"run:{self.id}"
        return f"{self.type.value}:{self.name or self.id}"


# --- Runs -----------------------------------------------------------------------------------

PhaseGroup = Literal["queued", "planning", "applying", "waiting", "other"]

# Statuses in which a run has reached its end. Anything else, including a status this
# version does not know, is non-final (the runs API,
# https://developer.hashicorp.com/terraform/cloud-docs/api-docs/run: run statuses are an open
# set; treating an unknown status as final could hide a run that still holds a lock).
FINAL_STATUSES = frozenset(
    {
        "applied",
        "planned_and_finished",
        "planned_and_saved",
        "policy_soft_failed",
        "discarded",
        "errored",
        "canceled",
        "force_canceled",
    }
)

# Which threshold of `run_stuck_after` applies to a non-final status.
_PHASE_GROUPS: dict[str, PhaseGroup] = {
    **dict.fromkeys(
        (
            "pending",
            "fetching",
            "fetching_completed",
            "pre_plan_running",
            "pre_plan_completed",
            "queuing",
            "plan_queued",
            "apply_queued",
            "queuing_apply",
            "confirmed",
        ),
        "queued",
    ),
    **dict.fromkeys(
        ("planning", "cost_estimating", "policy_checking", "post_plan_running"), "planning"
    ),
    **dict.fromkeys(
        ("applying", "pre_apply_running", "pre_apply_completed", "post_apply_running"),
        "applying",
    ),
    # Paused for a human: apply or discard.
    **dict.fromkeys(
        (
            "planned",
            "cost_estimated",
            "policy_checked",
            "policy_override",
            "post_plan_completed",
            "pre_plan_awaiting_decision",
            "post_plan_awaiting_decision",
        ),
        "waiting",
    ),
}


# Every non-final status this version knows, in a stable order: the fast path's
# `filter[current-run][status]`. A status missing here is still non-final (is_final_status);
# the full walk's self-check finds runs the filter missed (watchdog/sources/tfc/twotier.py).
NON_FINAL_STATUSES: tuple[str, ...] = tuple(_PHASE_GROUPS)


def is_final_status(status: str) -> bool:
    return status in FINAL_STATUSES


def phase_group(status: str) -> PhaseGroup | None:
    """The `run_stuck_after` group of a status; None for a final status."""
    if is_final_status(status):
        return None
    return _PHASE_GROUPS.get(status, "other")


@dataclass(frozen=True, slots=True)
class RunActions:
    """`data.attributes.actions` of a run: what the API says can be done now."""

    is_cancelable: bool = False
    is_force_cancelable: bool = False
    is_discardable: bool = False
    is_confirmable: bool = False


@dataclass(frozen=True, slots=True)
class RunPermissions:
    """`data.attributes.permissions` of a run, for the calling token."""

    can_cancel: bool = False
    can_force_cancel: bool = False
    can_discard: bool = False
    can_apply: bool = False


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    status: str
    created_at: datetime
    # Keys as the API sends them (`applying-at`, ...). The TFC source fills in only the current
    # status's key (when the API sent it): the one entered_status_at() reads.
    status_timestamps: Mapping[str, datetime] = field(default_factory=dict)
    actions: RunActions = field(default_factory=RunActions)
    permissions: RunPermissions = field(default_factory=RunPermissions)
    canceled_at: datetime | None = None
    force_cancel_available_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        return is_final_status(self.status)

    @property
    def phase_group(self) -> PhaseGroup | None:
        return phase_group(self.status)

    def entered_status_at(self) -> datetime | None:
        """When the run entered its current status, by the server's clock; None when unknown.

        From `status-timestamps`. A run is created `pending`, so `created-at` dates that
        status; any other status without its own timestamp has an unknown age: `created-at`
        or an earlier status's time would make a run that just entered it look hours old.
        """
        entered = self.status_timestamps.get(status_timestamp_key(self.status))
        if entered is None and self.status == "pending":
            return self.created_at
        return entered


def status_timestamp_key(status: str) -> str:
    """The `status-timestamps` key of a status: `policy_checking` -> `policy-checking-at`."""
    return status.replace("_", "-") + "-at"


# --- Workspaces and locks -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkspacePermissions:
    """`data.attributes.permissions` of a workspace, for the calling token."""

    can_lock: bool = False
    can_unlock: bool = False
    can_force_unlock: bool = False
    can_queue_run: bool = False


@dataclass(frozen=True, slots=True)
class Workspace:
    """One workspace as read in this cycle (TFC/TFE)."""

    organization: str
    id: str
    name: str
    project_id: str | None = None
    project_name: str | None = None
    tags: tuple[str, ...] = ()
    locked: bool = False
    # None when the API omitted it or sent null/"" (older TFE releases do not send it).
    locked_reason: str | None = None
    holder: Holder | None = None
    current_run: Run | None = None
    permissions: WorkspacePermissions = field(default_factory=WorkspacePermissions)
    # `latest-change-at`: the creation time of the workspace's latest state version. None
    # when the API did not send it. A CLI apply uploading intermediate snapshots moves it.
    latest_change_at: datetime | None = None
    # `plan-duration-average` / `apply-duration-average` (milliseconds in the API): how long
    # this workspace's plans and applies usually take. None when absent, null (no history
    # yet) or unreadable; an adaptive threshold then uses its fallback.
    plan_duration_average: timedelta | None = None
    apply_duration_average: timedelta | None = None
    # (field, what is wrong) for each field protection, rule matching or acting depends on
    # that the API sent missing or malformed (`("tag-names", "tag-names missing")`). The
    # workspace is still reported, but decide takes no action on it while the policy
    # depends on the field: a protection that cannot be checked protects.
    problems: tuple[tuple[str, str], ...] = ()

    def duration_average(self, phase: Literal["plan", "apply"]) -> timedelta | None:
        return self.plan_duration_average if phase == "plan" else self.apply_duration_average

    @property
    def lock_id(self) -> str:
        """The lock ID Terraform itself uses (what `terraform force-unlock` takes)."""
        return f"{self.organization}/{self.name}"

    @property
    def notice_key(self) -> tuple[str, str, str]:
        """(workspace id, holder id, run id) a notice on this workspace is given for: the
        lock's holder ("" when unlocked) and the current run while it is not final ("" if
        none). A new holder or run is a new key, so decide and Memory.prune_notices agree on
        when a notice lapses."""
        holder_id = self.holder.id if self.locked and self.holder else ""
        run = self.current_run
        return self.id, holder_id, run.id if run is not None and not run.is_final else ""


@dataclass(frozen=True, slots=True)
class TerraformLockInfo:
    """Terraform's own lock info, as stored by the S3 backend (DynamoDB item or .tflock) or the
    GCS backend (.tflock, whose lock ID is the object's generation)."""

    id: str
    operation: str
    who: str
    version: str
    created: datetime
    path: str
    info: str = ""


@dataclass(frozen=True, slots=True)
class BackendLock:
    """A lock in an S3- or GCS-backend store or GitLab-managed state. `store` is the table,
    bucket or GitLab project path; `path` the state path (`<project>/<state name>` on
    GitLab)."""

    source: Source
    store: str
    path: str
    info: TerraformLockInfo
    # What a compare-and-delete must match: the raw `Info` string (DynamoDB), the ETag (S3),
    # the object generation (GCS), or `<state id>|<lockedAt>|<user>` (GitLab, whose read API
    # shows no lock ID: `info.id` is empty there).
    token: str
    # Set when the item could not be parsed: reported, never acted on.
    problem: str | None = None
    # When the store, by its own clock, stored the lock: the `.tflock` object's LastModified
    # (S3) or timeCreated (GCS). `info.created` is the writer's clock; None for DynamoDB
    # items, which carry no server time.
    last_modified: datetime | None = None


def backend_lock_key(lock: BackendLock) -> tuple[str, str]:
    """(workspace id, holder id) under which a backend lock is remembered.

    GitLab shows no lock ID: its lock is known by `<state id>|<lockedAt>|<user>` (the token),
    so a new lock on the same state, even by the same user, starts over."""
    if lock.source is Source.GITLAB:
        return f"{lock.store}/{lock.path}", lock.token
    return f"{lock.store}/{lock.path}", lock.info.id


def backend_holder(lock: BackendLock) -> Holder:
    """Who holds a backend lock, as findings, actions and the audit name it: Terraform's
    `Who` and lock ID (a lock whose info could not be parsed has neither)."""
    if lock.problem is not None:
        return Holder(HolderType.TERRAFORM, "", "(unreadable lock info)")
    return Holder(HolderType.TERRAFORM, lock.info.id, lock.info.who or None)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one source read for one organization (or table/bucket) in one cycle.

    `complete` is False when any page failed: decisions about workspaces that were not read
    are impossible, and the report must say the picture is partial.
    `unreadable` holds ids of workspaces whose entries failed to parse: they are reported and
    never acted on this cycle.
    """

    source: Source
    organization: str
    server_now: datetime
    workspaces: tuple[Workspace, ...] = ()
    backend_locks: tuple[BackendLock, ...] = ()
    unreadable: frozenset[str] = frozenset()
    complete: bool = True
    error: str | None = None
    # The metrics.ERROR_REASONS value of `error` (e.g. "unauthorized"), when known.
    error_reason: str | None = None
    total_workspaces: int = 0
    # The TFC source keeps in `workspaces` only what decide can act or report on (locked,
    # or with a non-final current run): every parsed workspace of a 50,000-workspace
    # organization held ~190 MB. `listed_ids` has the ids of ALL workspaces the source
    # listed and parsed, kept or not; Memory.update needs them after a partial read.
    # Observations built by hand may leave it empty: use `ids_read`, which adds the ids of
    # `workspaces`.
    listed_ids: frozenset[str] = field(default=frozenset(), repr=False)
    # A fast-path read (TFC two-tier polling): only the workspaces whose current run is not
    # final were listed, and `listed_ids` holds just those. It does not see user/team locks:
    # the locked workspaces of the last full read that it did not list are carried in
    # `workspaces` (so they are reported, and acted on only after act's fresh re-read), but
    # Memory neither counts them as seen nor as released, and a workspace absent from the
    # page is not unlocked. Run-held locks on the listed workspaces are seen as in any read.
    fast: bool = False
    # On a full read that fast reads alternate with: the most time until the next full read
    # (`tfc.full_scan_interval`). Locks only a full read can see are watched across it, so
    # Memory's gap rule allows 2 x max(interval, this) + 30 s for their sightings.
    full_read_every: timedelta = timedelta(0)

    @property
    def ids_read(self) -> frozenset[str]:
        """Ids of every workspace read and parsed: `listed_ids` and those of `workspaces`
        (of a fast read, only `listed_ids`: the others in `workspaces` were carried, not
        read)."""
        if self.fast:
            return self.listed_ids
        kept = {workspace.id for workspace in self.workspaces}
        return self.listed_ids if kept <= self.listed_ids else self.listed_ids | kept

    @property
    def workspace_count(self) -> int:
        """The organization's workspaces: the API's total count, else how many were read."""
        return self.total_workspaces or len(self.ids_read)


# --- Findings and actions -------------------------------------------------------------------


class FindingKind(StrEnum):
    LOCK_HELD = "lock_held"
    LOCK_STALE = "lock_stale"
    RUN_STUCK = "run_stuck"
    RUN_WAITING = "run_waiting"
    RUNS_BLOCKED = "runs_blocked"


# Where a lock's age comes from: the run's status timestamp, the watchdog's own continuous
# observation, the lock info's `Created` (the writer's clock), or the `.tflock` object's
# LastModified (S3's clock) or timeCreated (GCS's clock); `locked_at`: GitLab's own time of
# the lock (its read API's `lockedAt`).
AgeSource = Literal["run", "first_seen", "lock_info", "last_modified", "locked_at"]


@dataclass(frozen=True, slots=True)
class LockState:
    """A held lock with its age, as every report shows it (the scan JSON `locks` entry)."""

    source: Source
    organization: str
    workspace: str
    workspace_id: str
    holder: Holder
    lock_id: str
    since: datetime
    age: timedelta
    age_source: AgeSource
    stale: bool
    rule: str
    reason: str | None
    run: Run | None = None
    lock_info: TerraformLockInfo | None = None
    # The last sign of life of a user/team lock's holder: a state version created while the
    # lock was held (the workspace's `latest-change-at` moved); the age restarts from it.
    last_activity: datetime | None = None
    # When a notice period (rule `notice`) lets the watchdog act on it, if one is running.
    action_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    source: Source
    organization: str
    workspace: str
    workspace_id: str
    rule: str
    # One human line: "run run-abc applying for 7h02m, threshold 6h".
    reason: str
    holder: Holder | None = None
    run_id: str | None = None
    run_status: str | None = None
    since: datetime | None = None
    age: timedelta | None = None
    threshold: timedelta | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity across cycles, to log a finding when it appears and when it clears."""
        return (
            self.kind.value,
            self.workspace_id,
            self.run_id or (self.holder.id if self.holder else ""),
        )


class ActionKind(StrEnum):
    """A rung of the ladder. The value is the `action` metric label and the config name."""

    CANCEL = "cancel"
    FORCE_CANCEL = "force_cancel"
    DISCARD = "discard"
    UNLOCK = "unlock"
    FORCE_UNLOCK = "force_unlock"
    DELETE_LOCK = "delete_lock"


# The rungs that clear a TFC lock itself (not its run): the only ones whose rung depends on
# who the watchdog is, and the only ones that must first check for a pending state upload.
UNLOCK_RUNGS = frozenset({ActionKind.UNLOCK, ActionKind.FORCE_UNLOCK})


class Outcome(StrEnum):
    """The `outcome` label of `tfc_watchdog_actions_total` (contract)."""

    DONE = "done"
    DRY_RUN = "dry_run"
    SKIPPED_CHANGED = "skipped_changed"
    SKIPPED_BUDGET = "skipped_budget"
    FORBIDDEN = "forbidden"
    FAILED = "failed"
    # Sent, and the server may have acted: a timeout or a dropped connection after the
    # request left, a 5xx, or a process killed before the answer was recorded.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """An action decide wants, with everything act.py must re-verify before doing it."""

    kind: ActionKind
    source: Source
    organization: str
    workspace: str
    workspace_id: str
    rule: str
    reason: str
    # The holder and run as observed; act.py acts only if a fresh read shows the same.
    holder: Holder | None
    run_id: str | None
    run_status: str | None
    since: datetime
    age: timedelta
    threshold: timedelta
    # For backend locks: the lock as observed (compare-and-delete input).
    backend_lock: BackendLock | None = None

    @property
    def comment(self) -> str:
        return f"tfc-watchdog: {self.reason}"

    def audit_fields(self) -> dict[str, object]:
        """The fields every action log line and JSON entry carries (the audit trail)."""
        return {
            "action": self.kind.value,
            "source": self.source.value,
            "organization": self.organization,
            "workspace": self.workspace,
            "workspace_id": self.workspace_id,
            "holder": self.holder.label() if self.holder else None,
            "run_id": self.run_id,
            "run_status": self.run_status,
            "age": format_age(self.age),
            "age_seconds": int(self.age.total_seconds()),
            "threshold": format_duration(self.threshold),
            "rule": self.rule,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Notice:
    """An action held back by its rule's `notice`: said first, done at `action_at` if the
    same lock (holder and run) is still there and still stale."""

    action: PlannedAction
    given_at: datetime
    action_at: datetime
    # Given in this cycle (to record and send), or running since an earlier one.
    new: bool
    holder_id: str
    run_id: str


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: PlannedAction
    outcome: Outcome
    detail: str = ""
    # True for a 503/"state version pending" on unlock: try again next cycle.
    retry_later: bool = False


# --- Time helpers ---------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_age(age: timedelta) -> str:
    """A human age: `45s`, `12m`, `7h02m`, `2d03h`."""
    seconds = max(0, int(age.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def format_duration(value: timedelta) -> str:
    """A threshold as the config writes it: `90s`, `30m`, `2h`, `1d`, `2h30m`."""
    total = value.total_seconds()
    if total != int(total) and total < 60:
        return f"{total:g}s"  # sub-second intervals in tests and demos: 0.5s, not 0s
    seconds = int(total)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"
