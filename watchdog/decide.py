"""Decide: what this cycle's observations mean and what the ladder would do about them.

Pure: no I/O, no clock reads, no logging. "Now" is a parameter (the API server's clock), the
memory is read, never written (the daemon calls `Memory.update` before `decide`).

Per workspace the first matching rule gives thresholds and allowed rungs. Findings:
`lock_held` (every locked workspace), `lock_stale` (a user/team lock older than
`lock_stale_after`, or a run-held lock whose run is stuck or waiting past `waiting`),
`run_stuck`, `run_waiting`, `runs_blocked` (a stale lock: no run can start; a pending
current run behind it is named).

The ladder (README "The ladder"), at most one rung per workspace, in this preference:
cancel -> force_cancel -> discard -> unlock / force_unlock. A run-held lock is never
unlocked: only ending its run clears it. When something is due but a guard holds the
watchdog back, a `Restraint` says why, so the daemon can log it.

Choices worth knowing:
- An Observation with `complete=False` gets no actions at all, even for workspaces it did
  read: a partial read is uncertain data (README "Safety and guarantees").
- A locked workspace without holder information gets a `lock_held` finding ("holder
  unknown") but no LockState and no action: its age cannot be told honestly.
- force_cancel also requires the run to be still past its phase threshold: the watchdog only
  escalates on runs it would itself have cancelled, never on a human's fresh cancel.
- A protected lock reason protects the whole workspace, run rungs included.
- A young user/team lock gives the restraint "young lock" only where the rule allows its
  rung (the watchdog would act once it is old); elsewhere it is simply reported.

Backend locks (`Observation.backend_locks`, sources dynamodb, s3 and gcs) have one rung,
`delete_lock`. Their rule comes from `Policy.rule_for_path(source, state path)` (the TFC
matchers never apply); their age is the observation's own `server_now` (the store's clock,
not the TFC server's: the two can differ) minus when the lock was taken. `Created` is the
locking client's clock, so it needs a server clock's word: a `.tflock` object is aged from
the younger of `Created` and the store's time of the object (S3's LastModified, GCS's
timeCreated); a DynamoDB item, which has only `Created`,
is deleted only once the watchdog has also observed it continuously for
`limits.backend_lock_min_observed` (until then it may be reported stale, saying by whose
clock, and the restraint says why nothing is done). A lock whose info could not be parsed
(a `Created` before 2000 or in the future included) is reported and never acted on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from watchdog.memory import Memory, backend_lock_key
from watchdog.model import (
    ActionKind,
    AgeSource,
    BackendLock,
    Finding,
    FindingKind,
    Holder,
    HolderType,
    LockState,
    Observation,
    PhaseGroup,
    PlannedAction,
    Run,
    Source,
    Workspace,
    format_age,
    format_duration,
    status_timestamp_key,
)
from watchdog.policy import EffectiveRule, Policy, RunThreshold

# Sightings of the same lock (same holder) before it may be cleared: one cycle could be a
# glimpse of a lock someone is about to release.
MIN_SIGHTINGS = 2


@dataclass(frozen=True)
class Restraint:
    """Why a lock or run was NOT acted on (logged: "young lock", "protected", ...)."""

    workspace_id: str
    organization: str
    workspace: str
    reason: str


@dataclass(frozen=True)
class Decision:
    locks: tuple[LockState, ...]
    findings: tuple[Finding, ...]
    # Stable order: oldest first, then organization/workspace name; at most one per workspace.
    planned: tuple[PlannedAction, ...]
    restraints: tuple[Restraint, ...]


# --- what a workspace looks like this cycle -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RunView:
    """The current run, if non-final, with its age in its current status."""

    run: Run
    group: PhaseGroup
    # None when the API gave no timestamp for the current status: the age is unknown, so the
    # run is never overdue and nothing is done about it.
    since: datetime | None
    age: timedelta | None
    # The threshold with where it came from (a plain duration, or an adaptive one derived
    # from the workspace's average), so findings say why a run counts as stuck.
    limit: RunThreshold

    @property
    def threshold(self) -> timedelta:
        return self.limit.value

    @property
    def overdue(self) -> bool:
        return self.age is not None and self.age > self.threshold

    def describe(self) -> str:
        if self.age is None:
            return (
                f"run {self.run.id} {self.run.status}, age unknown "
                f"(no {status_timestamp_key(self.run.status)} timestamp)"
            )
        if self.group == "waiting":
            return (
                f"run {self.run.id} {self.run.status}, waiting for a human for "
                f"{format_age(self.age)}, {self.limit.describe()}"
            )
        return (
            f"run {self.run.id} {self.run.status} for {format_age(self.age)}, "
            f"{self.limit.describe()}"
        )


@dataclass(frozen=True, slots=True)
class _View:
    workspace: Workspace
    rule: EffectiveRule
    run: _RunView | None
    lock: LockState | None


def _run_view(workspace: Workspace, rule: EffectiveRule, now: datetime) -> _RunView | None:
    run = workspace.current_run
    if run is None or run.phase_group is None:
        return None
    limit = rule.run_threshold(run, workspace)
    assert limit is not None  # non-final runs always have a group, hence a threshold
    since = run.entered_status_at()
    age = None if since is None else now - since
    return _RunView(run, run.phase_group, since, age, limit)


def _lock_state(
    workspace: Workspace,
    rule: EffectiveRule,
    run_view: _RunView | None,
    memory: Memory,
    now: datetime,
) -> LockState | None:
    holder = workspace.holder
    if not workspace.locked or holder is None:
        return None
    holder_run = workspace.current_run
    if holder.type is HolderType.RUN and holder_run is not None and holder_run.id == holder.id:
        # A run lock is as old as the run's current status; it is stale when the run is.
        entered = holder_run.entered_status_at()
        if entered is not None:
            stale = run_view is not None and run_view.overdue
            return _make_lock(workspace, rule, holder, entered, now, "run", stale, holder_run)
    first_seen = memory.first_seen(workspace.id, holder.id)
    since = now if first_seen is None else first_seen
    if holder_run is not None and holder_run.id == holder.id:
        # The run's status has no timestamp: its age is unknown. Shown as observed, never
        # stale (an older timestamp would make a run that just moved on look hours old).
        return _make_lock(workspace, rule, holder, since, now, "first_seen", False, holder_run)
    if holder.type is HolderType.RUN:
        # Held by a run other than the current one: its status is unknown, so never stale.
        return _make_lock(workspace, rule, holder, since, now, "first_seen", False, None)
    # A user/team lock: aged from its first sighting or its holder's last sign of life.
    stale = now - since > rule.lock_stale_after
    lock = _make_lock(workspace, rule, holder, since, now, "first_seen", stale, None)
    activity = memory.last_activity(workspace.id, holder.id)
    return lock if activity is None else replace(lock, last_activity=activity)


def _make_lock(
    workspace: Workspace,
    rule: EffectiveRule,
    holder: Holder,
    since: datetime,
    now: datetime,
    age_source: AgeSource,
    stale: bool,
    run: Run | None,
) -> LockState:
    return LockState(
        source=Source.TFC,
        organization=workspace.organization,
        workspace=workspace.name,
        workspace_id=workspace.id,
        holder=holder,
        lock_id=workspace.lock_id,
        since=since,
        age=now - since,
        age_source=age_source,
        stale=stale,
        rule=rule.id,
        reason=workspace.locked_reason,
        run=run,
    )


def _view(workspace: Workspace, policy: Policy, memory: Memory, now: datetime) -> _View:
    rule = policy.rule_for_workspace(workspace)
    run_view = _run_view(workspace, rule, now)
    return _View(workspace, rule, run_view, _lock_state(workspace, rule, run_view, memory, now))


def _who(holder: Holder) -> str:
    """`user:alice`, `team:platform`, `run:run-abc` (a run's name is its status: not an id)."""
    return f"run:{holder.id}" if holder.type is HolderType.RUN else holder.label()


# --- findings -------------------------------------------------------------------------------


def _findings(view: _View) -> list[Finding]:
    ws, rule, run_view, lock = view.workspace, view.rule, view.run, view.lock
    findings: list[Finding] = []

    def add(
        kind: FindingKind,
        reason: str,
        *,
        holder: Holder | None = None,
        run: Run | None = None,
        since: datetime | None = None,
        age: timedelta | None = None,
        threshold: timedelta | None = None,
    ) -> None:
        findings.append(
            Finding(
                kind=kind,
                source=Source.TFC,
                organization=ws.organization,
                workspace=ws.name,
                workspace_id=ws.id,
                rule=rule.id,
                reason=reason,
                holder=holder,
                run_id=run.id if run else None,
                run_status=run.status if run else None,
                since=since,
                age=age,
                threshold=threshold,
            )
        )

    if ws.locked and lock is None:
        add(FindingKind.LOCK_HELD, "locked, holder unknown (the API did not say who)")
    if lock is not None:
        if lock.run is not None and lock.age_source == "first_seen":
            held = (
                f"locked by run {lock.run.id} ({lock.run.status}) for {format_age(lock.age)} "
                f"(as observed; run age unknown: no "
                f"{status_timestamp_key(lock.run.status)} timestamp)"
            )
        elif lock.run is not None:
            held = f"locked by run {lock.run.id} ({lock.run.status}) for {format_age(lock.age)}"
        else:
            held = f"locked by {_who(lock.holder)} for {format_age(lock.age)} (as observed)"
        add(
            FindingKind.LOCK_HELD,
            held,
            holder=lock.holder,
            run=lock.run,
            since=lock.since,
            age=lock.age,
        )
        if lock.stale:
            if lock.run is not None and run_view is not None:
                threshold = run_view.threshold
                what = "waiting" if run_view.group == "waiting" else "stuck"
                stale_reason = f"lock held by a {what} run: {run_view.describe()}"
            else:
                threshold = rule.lock_stale_after
                stale_reason = (
                    f"lock held by {_who(lock.holder)} for {format_age(lock.age)}, "
                    f"threshold {format_duration(threshold)}"
                )
            # The workspace list shows no run queue (and the run lists, 30 requests a minute,
            # are too dear to read per workspace), so the finding says what is certain: no
            # run can start here; a queued run is named only when it is the current run.
            waiting = ws.current_run
            if waiting is not None and waiting.status == "pending" and lock.run is None:
                blocked = (
                    f"run {waiting.id} is pending behind the stale lock of {_who(lock.holder)}"
                )
            else:
                blocked = (
                    f"stale lock held by {_who(lock.holder)}: no run on this workspace can "
                    "start until it is cleared"
                )
            stale_kinds = (
                (FindingKind.LOCK_STALE, stale_reason),
                (FindingKind.RUNS_BLOCKED, blocked),
            )
            for kind, reason in stale_kinds:
                add(
                    kind,
                    reason,
                    holder=lock.holder,
                    run=lock.run,
                    since=lock.since,
                    age=lock.age,
                    threshold=threshold,
                )
    if run_view is not None and run_view.overdue:
        add(
            FindingKind.RUN_WAITING if run_view.group == "waiting" else FindingKind.RUN_STUCK,
            run_view.describe(),
            holder=ws.holder,
            run=run_view.run,
            since=run_view.since,
            age=run_view.age,
            threshold=run_view.threshold,
        )
    return findings


# --- the ladder -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Step:
    """A rung the state of a workspace points at, before the guards."""

    kind: ActionKind
    due: bool
    reason: str
    since: datetime
    age: timedelta
    threshold: timedelta
    # A precondition the API or the memory says is not met yet (None = met).
    blocker: str | None
    # What the rung acts on, without ages: restraints must read the same every cycle so the
    # daemon logs each one once.
    subject: str


def _run_step(view: _RunView, now: datetime) -> _Step:
    run = view.run
    # _ladder never asks for the rung of a run whose age is unknown.
    assert view.since is not None
    assert view.age is not None
    blocker: str | None = None
    if run.canceled_at is not None and view.group != "waiting":
        kind = ActionKind.FORCE_CANCEL
        available = run.force_cancel_available_at
        reason = f"{view.describe()}; cancel requested {run.canceled_at.isoformat()}"
        # The cool-off first: while it runs the API also says "not force-cancelable", and
        # "cool-off until <time>" tells the reader when the next rung becomes possible.
        if available is not None and available > now:
            blocker = f"force-cancel cool-off until {available.isoformat()}"
        elif not run.actions.is_force_cancelable:
            blocker = f"run {run.id} is not force-cancelable (actions.is-force-cancelable false)"
        elif available is None:
            blocker = f"run {run.id} has no force-cancel-available-at yet"
    elif view.group == "waiting":
        kind = ActionKind.DISCARD
        reason = view.describe()
        if not run.actions.is_discardable:
            blocker = f"run {run.id} is not discardable (actions.is-discardable false)"
    else:
        kind = ActionKind.CANCEL
        reason = view.describe()
        if not run.actions.is_cancelable:
            blocker = f"run {run.id} is not cancelable (actions.is-cancelable false)"
    subject = f"run {run.id} ({run.status})"
    if view.limit.basis is not None:
        # An adaptive threshold says where it came from (it moves with the workspace's
        # average, not with the run's age, so the text still reads the same every cycle).
        subject = f"{subject}, {view.limit.describe()}"
    return _Step(kind, view.overdue, reason, view.since, view.age, view.threshold, blocker, subject)


def _waits_on_lock(view: _View) -> bool:
    """The current run is `pending` behind a user/team lock: it has not started, holds no
    state, and is exactly what the lock blocks (the workspaces API docs: "New runs remain in
    the Pending state until the workspace unlocks")."""
    return (
        view.run is not None
        and view.run.run.status == "pending"
        and view.lock is not None
        and view.lock.holder.type in (HolderType.USER, HolderType.TEAM)
    )


def _lock_step(view: _View, memory: Memory, identity: Holder | None) -> _Step | None:
    lock = view.lock
    if lock is None or lock.holder.type not in (HolderType.USER, HolderType.TEAM):
        return None  # a run-held lock is cleared only by ending its run
    holder = lock.holder
    own = identity is not None and identity.type == holder.type and identity.id == holder.id
    kind = ActionKind.UNLOCK if own else ActionKind.FORCE_UNLOCK
    threshold = view.rule.lock_stale_after
    sightings = memory.sightings(view.workspace.id, holder.id)
    blocker: str | None = None
    if sightings < MIN_SIGHTINGS:
        blocker = f"lock seen with this holder in {sightings} cycle(s), {MIN_SIGHTINGS} needed"
    elif view.run is not None and not _waits_on_lock(view):
        blocker = f"current run {view.run.run.id} is {view.run.run.status}, not final"
    reason = (
        f"lock held by {_who(holder)} for {format_age(lock.age)}, "
        f"threshold {format_duration(threshold)}"
    )
    subject = f"the lock of {_who(holder)}"
    return _Step(kind, lock.stale, reason, lock.since, lock.age, threshold, blocker, subject)


def _ladder(
    view: _View,
    organization_complete: bool,
    unreadable: bool,
    policy: Policy,
    memory: Memory,
    now: datetime,
    identity: Holder | None,
) -> PlannedAction | str | None:
    """The one action the ladder gives for a workspace, or why not (a str), or None.

    The "why not" text holds no ages, so it stays the same from cycle to cycle."""
    ws, rule = view.workspace, view.rule
    # Before anything else, and whatever the rule allows: what cannot be checked is a no.
    unchecked = policy.unchecked(ws)
    if unchecked:
        return f"{'; '.join(unchecked)}: protection and rules cannot be checked, no actions"
    if view.run is not None and view.run.since is None:
        return f"{view.run.describe()}: no actions on this workspace"
    # A pending run behind a user/team lock is waiting for that lock, not stuck: the lock is
    # what to clear, and cancelling the run would throw away someone's queued work.
    run_step = None if view.run is None or _waits_on_lock(view) else _run_step(view.run, now)
    steps = [
        step
        for step in (
            run_step,
            _lock_step(view, memory, identity),
        )
        if step is not None
    ]
    step = next((s for s in steps if s.due), None)
    if step is None:
        young = steps[-1] if steps and steps[-1].kind in _LOCK_RUNGS else None
        if young is None or young.kind not in rule.actions:
            return None
        guard = _general_guard(ws, organization_complete, unreadable, policy)
        return guard or (
            f"young lock: {young.subject} is not yet past "
            f"lock_stale_after {format_duration(young.threshold)}"
        )
    guard = _general_guard(ws, organization_complete, unreadable, policy)
    if guard is None and step.kind not in rule.actions:
        guard = f"{step.kind.value} not allowed by rule {rule.id}"
    if guard is None:
        guard = step.blocker
    if guard is not None:
        return f"{guard} (would {step.kind.value} {step.subject})"
    run = ws.current_run
    return PlannedAction(
        kind=step.kind,
        source=Source.TFC,
        organization=ws.organization,
        workspace=ws.name,
        workspace_id=ws.id,
        rule=rule.id,
        reason=step.reason,
        holder=ws.holder,
        run_id=run.id if run else None,
        run_status=run.status if run else None,
        since=step.since,
        age=step.age,
        threshold=step.threshold,
    )


_LOCK_RUNGS = frozenset({ActionKind.UNLOCK, ActionKind.FORCE_UNLOCK})


def _general_guard(
    workspace: Workspace, organization_complete: bool, unreadable: bool, policy: Policy
) -> str | None:
    if not organization_complete:
        return "organization read incomplete this cycle: no actions"
    if unreadable:
        return "workspace entry unreadable this cycle: no actions"
    protection = policy.protect.workspace_protection(workspace)
    if protection is None:
        protection = policy.protect.reason_protection(workspace.locked_reason)
    return None if protection is None else f"protected: {protection}"


# --- entry points ---------------------------------------------------------------------------


def plan_for_workspace(
    workspace: Workspace,
    organization_complete: bool,
    policy: Policy,
    memory: Memory,
    now: datetime,
    identity: Holder | None,
) -> PlannedAction | None:
    """The single action the ladder gives for one workspace (act.py runs it on a fresh read)."""
    view = _view(workspace, policy, memory, now)
    result = _ladder(view, organization_complete, False, policy, memory, now, identity)
    return result if isinstance(result, PlannedAction) else None


# --- S3-backend locks (DynamoDB items, .tflock objects) ---------------------------------------


@dataclass(frozen=True, slots=True)
class _BackendView:
    lock: BackendLock
    rule: EffectiveRule
    state: LockState
    # Past `lock_stale_after` by its age, but a DynamoDB lock not yet observed continuously for
    # `limits.backend_lock_min_observed`: its age is the writer's clock alone, so it is
    # reported stale (saying so) and never acted on.
    unconfirmed: bool = False


def _backend_holder(lock: BackendLock) -> Holder:
    if lock.problem is not None:
        return Holder(HolderType.TERRAFORM, "", "(unreadable lock info)")
    return Holder(HolderType.TERRAFORM, lock.info.id, lock.info.who or None)


def _backend_age(lock: BackendLock) -> tuple[datetime, AgeSource]:
    """Since when a backend lock is held, and by whose clock.

    `Created` is the locking client's clock. A `.tflock` object also has the store's time
    (S3's LastModified, GCS's timeCreated): the younger of the two is used, so a slow
    client clock cannot age a lock the store stored a moment ago. A DynamoDB item has only
    `Created` (see `_backend_view`)."""
    created, stored = lock.info.created, lock.last_modified
    if stored is not None and stored > created:
        return stored, "last_modified"
    return created, "lock_info"


_AGE_SOURCE_TEXT = {"lock_info": "Created", "last_modified": "LastModified"}


def _backend_view(
    lock: BackendLock,
    policy: Policy,
    now: datetime,
    memory: Memory,
    observed_now: datetime | None = None,
) -> _BackendView:
    """`now` is the store's clock (ages); `observed_now` the clock memory's first-seen times
    are in (the cycle's; defaults to `now`)."""
    rule = policy.rule_for_path(lock.source.value, lock.path)
    workspace_id, holder_id = backend_lock_key(lock)
    info = lock.info
    since, age_source = _backend_age(lock)
    age = now - since
    over = lock.problem is None and age > rule.lock_stale_after
    unconfirmed = False
    if over and lock.last_modified is None:
        # Only the writer's clock dates this lock: it may be acted on once the watchdog has
        # also watched it continuously for the minimum time.
        first_seen = memory.first_seen(workspace_id, holder_id, lock.source)
        observed = timedelta(0) if first_seen is None else (observed_now or now) - first_seen
        unconfirmed = observed < policy.limits.backend_lock_min_observed
    state = LockState(
        source=lock.source,
        organization=lock.store,
        workspace=lock.path,
        workspace_id=workspace_id,
        holder=_backend_holder(lock),
        lock_id=info.id,
        since=since,
        age=age,
        age_source=age_source,
        # An unparsed lock has no trustworthy age: never stale, never acted on. An unconfirmed
        # one is reported stale (by its writer's clock, and the finding says so) but not
        # acted on until observation confirms it.
        stale=over,
        rule=rule.id,
        reason=f"unreadable lock info: {lock.problem}" if lock.problem else (info.info or None),
        lock_info=None if lock.problem else info,
    )
    return _BackendView(lock, rule, state, unconfirmed)


def _describe_backend(lock: LockState) -> str:
    """`terraform:alice@ci-42 (OperationTypeApply), lock ID 6f1c...`."""
    info = lock.lock_info
    operation = f" ({info.operation})" if info and info.operation else ""
    return f"{_who(lock.holder)}{operation}, lock ID {lock.lock_id}"


def _backend_findings(view: _BackendView) -> list[Finding]:
    lock, rule = view.state, view.rule

    def finding(kind: FindingKind, reason: str, threshold: timedelta | None = None) -> Finding:
        return Finding(
            kind=kind,
            source=lock.source,
            organization=lock.organization,
            workspace=lock.workspace,
            workspace_id=lock.workspace_id,
            rule=rule.id,
            reason=reason,
            holder=lock.holder,
            since=lock.since,
            age=lock.age,
            threshold=threshold,
        )

    if view.lock.problem is not None:
        return [
            finding(
                FindingKind.LOCK_HELD,
                f"locked, lock info unreadable ({view.lock.problem}): reported, never acted on",
            )
        ]
    clock = _AGE_SOURCE_TEXT.get(lock.age_source, lock.age_source)
    if lock.age_source == "last_modified" and lock.source is Source.GCS:
        clock = "timeCreated"  # GCS's name for the time it stored this generation
    findings = [
        finding(
            FindingKind.LOCK_HELD,
            f"locked by {_describe_backend(lock)} for {format_age(lock.age)} (age from {clock})",
        )
    ]
    if lock.stale:
        unconfirmed = (
            " (by Created, the writer's clock; not yet observed for "
            "limits.backend_lock_min_observed)"
            if view.unconfirmed
            else ""
        )
        findings.append(
            finding(
                FindingKind.LOCK_STALE,
                f"lock held by {_describe_backend(lock)} for {format_age(lock.age)}, "
                f"threshold {format_duration(rule.lock_stale_after)}{unconfirmed}",
                rule.lock_stale_after,
            )
        )
    return findings


def _backend_ladder(
    view: _BackendView, complete: bool, policy: Policy, memory: Memory
) -> PlannedAction | str | None:
    """delete_lock for a stale backend lock, or why not (a str without ages), or None."""
    lock, rule, state = view.lock, view.rule, view.state
    kind = ActionKind.DELETE_LOCK
    if kind not in rule.actions:
        return None
    subject = f"lock {state.lock_id or '(unreadable)'} of {lock.path}"
    guard: str | None = None
    if lock.problem is not None:
        guard = "lock info unreadable: never acted on"
    elif not complete:
        guard = "store read incomplete this cycle: no actions"
    else:
        guard = _backend_protection(lock, policy)
    if guard is None and not state.stale:
        return (
            f"young lock: {subject} is not yet past "
            f"lock_stale_after {format_duration(rule.lock_stale_after)}"
        )
    if guard is None and view.unconfirmed:
        guard = (
            "stale only by its Created (the writer's clock): not yet observed for "
            "limits.backend_lock_min_observed "
            f"{format_duration(policy.limits.backend_lock_min_observed)}"
        )
    if guard is None:
        workspace_id, holder_id = backend_lock_key(lock)
        sightings = memory.sightings(workspace_id, holder_id, lock.source)
        if sightings < MIN_SIGHTINGS:
            guard = f"lock seen with this ID in {sightings} cycle(s), {MIN_SIGHTINGS} needed"
    if guard is not None:
        return f"{guard} (would {kind.value} {subject})" if state.stale else guard
    return PlannedAction(
        kind=kind,
        source=lock.source,
        organization=lock.store,
        workspace=lock.path,
        workspace_id=state.workspace_id,
        rule=rule.id,
        reason=(
            f"lock held by {_describe_backend(state)} for {format_age(state.age)}, "
            f"threshold {format_duration(rule.lock_stale_after)}"
        ),
        holder=state.holder,
        run_id=None,
        run_status=None,
        since=state.since,
        age=state.age,
        threshold=rule.lock_stale_after,
        backend_lock=lock,
    )


def _backend_protection(lock: BackendLock, policy: Policy) -> str | None:
    # Terraform's `Info` field is the only free text a lock carries: the same patterns that
    # protect a TFC lock reason ("maintenance", "do not unlock") protect it.
    protection = policy.protect.reason_protection(lock.info.info or None)
    return None if protection is None else f"protected: {protection}"


def plan_for_backend_lock(
    lock: BackendLock, complete: bool, policy: Policy, memory: Memory, now: datetime
) -> PlannedAction | None:
    """The action for one S3-backend lock (act.py runs it on a fresh read); `now` is the
    lock store's clock."""
    view = _backend_view(lock, policy, now, memory)
    result = _backend_ladder(view, complete, policy, memory)
    return result if isinstance(result, PlannedAction) else None


def _decide_backend(
    observations: Sequence[Observation], policy: Policy, memory: Memory, now: datetime
) -> tuple[list[LockState], list[Finding], list[PlannedAction], list[Restraint]]:
    locks: list[LockState] = []
    findings: list[Finding] = []
    planned: list[PlannedAction] = []
    restraints: list[Restraint] = []
    # Overlapping prefixes of one bucket would list a lock twice: report and plan it once.
    done: set[tuple[Source, str, str]] = set()
    backend = [o for o in observations if o.source is not Source.TFC]
    for observation in sorted(backend, key=lambda o: (o.source.value, o.organization)):
        for lock in sorted(observation.backend_locks, key=lambda lk: lk.path):
            key = (lock.source, lock.store, lock.path)
            if key in done:
                continue
            done.add(key)
            # Each store's own clock: AWS and the TFC server (or simulator) may disagree.
            view = _backend_view(lock, policy, observation.server_now, memory, now)
            locks.append(view.state)
            findings.extend(_backend_findings(view))
            result = _backend_ladder(view, observation.complete, policy, memory)
            if isinstance(result, PlannedAction):
                planned.append(result)
            elif result is not None:
                restraints.append(Restraint(view.state.workspace_id, lock.store, lock.path, result))
    return locks, findings, planned, restraints


# --- entry points (all sources) ---------------------------------------------------------------


def decide(
    observations: Sequence[Observation],
    policy: Policy,
    memory: Memory,
    now: datetime,
    identity: Holder | None = None,
) -> Decision:
    """Findings and planned actions for this cycle's observations.

    `now` is the TFC server's clock; S3-backend locks are aged by the `server_now` of their
    own observation.
    """
    locks: list[LockState] = []
    findings: list[Finding] = []
    planned: list[PlannedAction] = []
    restraints: list[Restraint] = []
    tfc = [o for o in observations if o.source is Source.TFC]
    for observation in sorted(tfc, key=lambda o: o.organization):
        for workspace in sorted(observation.workspaces, key=lambda w: (w.name, w.id)):
            view = _view(workspace, policy, memory, now)
            if view.lock is not None:
                locks.append(view.lock)
            findings.extend(_findings(view))
            result = _ladder(
                view,
                observation.complete,
                workspace.id in observation.unreadable,
                policy,
                memory,
                now,
                identity,
            )
            if isinstance(result, PlannedAction):
                planned.append(result)
            elif result is not None:
                restraints.append(
                    Restraint(workspace.id, workspace.organization, workspace.name, result)
                )
    backend_locks, backend_findings, backend_planned, backend_restraints = _decide_backend(
        observations, policy, memory, now
    )
    locks.extend(backend_locks)
    findings.extend(backend_findings)
    planned.extend(backend_planned)
    restraints.extend(backend_restraints)
    planned.sort(key=lambda a: (-a.age, a.organization, a.workspace, a.workspace_id))
    return Decision(tuple(locks), tuple(findings), tuple(planned), tuple(restraints))
