"""The TFC ladder: what a workspace's lock and current run mean, and the one rung to take.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from watchdog.decide.common import (
    MIN_SIGHTINGS,
    MemoryView,
    Partial,
    held_for_notice,
)
from watchdog.model import (
    UNLOCK_RUNGS,
    ActionKind,
    AgeSource,
    Finding,
    FindingKind,
    Holder,
    HolderType,
    LockState,
    Notice,
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
    *,
    memory: MemoryView,
    now: datetime,
) -> LockState | None:
    holder = workspace.holder
    if not workspace.locked or holder is None:
        return None
    holder_run = workspace.current_run
    held_by_current_run = holder_run is not None and holder_run.id == holder.id
    entered = (
        holder_run.entered_status_at()
        if holder_run is not None and held_by_current_run and holder.type is HolderType.RUN
        else None
    )
    age_source: AgeSource = "first_seen"
    activity: datetime | None = None
    if entered is not None:
        # A run lock is as old as the run's current status; it is stale when the run is.
        since, age_source = entered, "run"
        stale = run_view is not None and run_view.overdue
    else:
        first_seen = memory.first_seen(workspace.id, holder.id)
        since = now if first_seen is None else first_seen
        if held_by_current_run or holder.type is HolderType.RUN:
            # The current run's status has no timestamp: its age is unknown. Shown as
            # observed, never stale (an older timestamp would make a run that just moved on
            # look hours old). Another run's status is unknown altogether: never stale either.
            stale = False
        else:
            # A user/team lock: aged from its first sighting or its holder's last sign of life.
            stale = now - since > rule.lock_stale_after
            activity = memory.last_activity(workspace.id, holder.id)
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
        run=holder_run if held_by_current_run else None,
        last_activity=activity,
    )


def _view(workspace: Workspace, policy: Policy, memory: MemoryView, now: datetime) -> _View:
    rule = policy.rule_for_workspace(workspace)
    run_view = _run_view(workspace, rule, now)
    return _View(
        workspace, rule, run_view, _lock_state(workspace, rule, run_view, memory=memory, now=now)
    )


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
            held = f"locked by {lock.holder.label()} for {format_age(lock.age)} (as observed)"
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
                    f"lock held by {lock.holder.label()} for {format_age(lock.age)}, "
                    f"threshold {format_duration(threshold)}"
                )
            # The workspace list shows no run queue (and the run lists, 30 requests a minute,
            # are too dear to read per workspace), so the finding says what is certain: no
            # run can start here; a queued run is named only when it is the current run.
            waiting = ws.current_run
            if waiting is not None and waiting.status == "pending" and lock.run is None:
                blocked = (
                    f"run {waiting.id} is pending behind the stale lock of {lock.holder.label()}"
                )
            else:
                blocked = (
                    f"stale lock held by {lock.holder.label()}: no run on this workspace can "
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


def _lock_step(view: _View, memory: MemoryView, identity: Holder | None) -> _Step | None:
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
        f"lock held by {holder.label()} for {format_age(lock.age)}, "
        f"threshold {format_duration(threshold)}"
    )
    subject = f"the lock of {holder.label()}"
    return _Step(kind, lock.stale, reason, lock.since, lock.age, threshold, blocker, subject)


def _ladder(
    view: _View,
    *,
    organization_complete: bool,
    unreadable: bool,
    policy: Policy,
    memory: MemoryView,
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
        young = steps[-1] if steps and steps[-1].kind in UNLOCK_RUNGS else None
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


# --- entry points --------------------------------------------------------------------------


def _noticed(
    result: PlannedAction | str | None, view: _View, memory: MemoryView, now: datetime
) -> PlannedAction | Notice | str | None:
    """Held back while a `notice` given for this very lock (same holder, same run) is younger
    than the rule's `notice` on the server's clock."""
    return held_for_notice(result, view.rule.notice, memory, now, key=view.workspace.notice_key)


def plan_for_workspace(
    workspace: Workspace,
    *,
    organization_complete: bool,
    policy: Policy,
    memory: MemoryView,
    now: datetime,
    identity: Holder | None,
) -> PlannedAction | None:
    """The single action the ladder gives for one workspace (act.py runs it on a fresh read)."""
    view = _view(workspace, policy, memory, now)
    result = _ladder(
        view,
        organization_complete=organization_complete,
        unreadable=False,
        policy=policy,
        memory=memory,
        now=now,
        identity=identity,
    )
    noticed = _noticed(result, view, memory, now)
    return noticed if isinstance(noticed, PlannedAction) else None


def decide_tfc(
    observations: Sequence[Observation],
    policy: Policy,
    memory: MemoryView,
    now: datetime,
    *,
    identity: Holder | None,
) -> Partial:
    """Lock states, findings, planned actions and restraints for the TFC observations."""
    out = Partial()
    tfc = [o for o in observations if o.source is Source.TFC]
    for observation in sorted(tfc, key=lambda o: o.organization):
        for workspace in sorted(observation.workspaces, key=lambda w: (w.name, w.id)):
            view = _view(workspace, policy, memory, now)
            out.findings.extend(_findings(view))
            result = _noticed(
                _ladder(
                    view,
                    organization_complete=observation.complete,
                    unreadable=workspace.id in observation.unreadable,
                    policy=policy,
                    memory=memory,
                    now=now,
                    identity=identity,
                ),
                view,
                memory,
                now,
            )
            out.add(view.lock, result, where=(workspace.id, workspace.organization, workspace.name))
    return out
