"""The backend-lock ladder: Terraform backend locks (DynamoDB items, S3 and GCS `.tflock`
objects) and their one rung, `delete_lock`. Another lock store plugs in here with the same
rung.

Their rule comes from `Policy.rule_for_path(source, state path)` (the TFC matchers never
apply); their age is the observation's own `server_now` (the store's clock, not the TFC
server's: the two can differ) minus when the lock was taken. `Created` is the locking
client's clock, so it needs a server clock's word: a `.tflock` object is aged from the younger
of `Created` and the store's time of the object (S3's LastModified, GCS's timeCreated); a
DynamoDB item, which has only `Created`, is deleted only once the watchdog has also observed
it continuously for `limits.backend_lock_min_observed` (until then it may be reported stale,
saying by whose clock, and the restraint says why nothing is done). A lock whose info could
not be parsed (a `Created` before 2000 or in the future included) is reported and never
acted on.

A rule's `notice` holds `delete_lock` back as it holds the TFC rungs: a notice is given for
this very lock (same store and path, same lock ID; GitLab: same lock token) and the lock is
deleted only once that notice is `notice` old on the cycle's clock. A new lock ID or a
release lapses it (`Memory.prune_notices`).
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
    ActionKind,
    AgeSource,
    BackendLock,
    Finding,
    FindingKind,
    LockState,
    Observation,
    PlannedAction,
    Source,
    backend_holder,
    backend_lock_key,
    format_age,
    format_duration,
)
from watchdog.policy import EffectiveRule, Policy


@dataclass(frozen=True, slots=True)
class _BackendView:
    lock: BackendLock
    rule: EffectiveRule
    state: LockState
    # Past `lock_stale_after` by its age, but a DynamoDB lock not yet observed continuously for
    # `limits.backend_lock_min_observed`: its age is the writer's clock alone, so it is
    # reported stale (saying so) and never acted on.
    unconfirmed: bool = False


def _backend_age(lock: BackendLock) -> tuple[datetime, AgeSource]:
    """Since when a backend lock is held, and by whose clock.

    `Created` is the locking client's clock. A `.tflock` object also has the store's time
    (S3's LastModified, GCS's timeCreated): the younger of the two is used, so a slow
    client clock cannot age a lock the store stored a moment ago. A DynamoDB item has only
    `Created` (see `_backend_view`)."""
    created, stored = lock.info.created, lock.last_modified
    if lock.source is Source.GITLAB:
        # Set by GitLab's clock when the lock was taken: there is no client clock to doubt.
        return created, "locked_at"
    if stored is not None and stored > created:
        return stored, "last_modified"
    return created, "lock_info"


_AGE_SOURCE_TEXT = {
    "lock_info": "Created",
    "last_modified": "LastModified",
    "locked_at": "GitLab's lockedAt",
}


def _backend_view(
    lock: BackendLock,
    policy: Policy,
    now: datetime,
    memory: MemoryView,
    *,
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
        holder=backend_holder(lock),
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
    if not lock.lock_id:
        # GitLab-managed state: its read API does not show the lock ID.
        return f"{lock.holder.label()}{operation}, locked at {lock.since.isoformat()}"
    return f"{lock.holder.label()}{operation}, lock ID {lock.lock_id}"


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
    view: _BackendView, complete: bool, policy: Policy, memory: MemoryView
) -> PlannedAction | str | None:
    """delete_lock for a stale backend lock, or why not (a str without ages), or None."""
    lock, rule, state = view.lock, view.rule, view.state
    kind = ActionKind.DELETE_LOCK
    if kind not in rule.actions:
        return None
    if lock.problem is not None:
        subject = f"lock (unreadable) of {lock.path}"
    else:
        subject = (
            f"lock {state.lock_id} of {lock.path}" if state.lock_id else f"lock of {lock.path}"
        )
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
    lock: BackendLock, *, complete: bool, policy: Policy, memory: MemoryView, now: datetime
) -> PlannedAction | None:
    """The action for one S3-backend lock (act.py runs it on a fresh read); `now` is the
    lock store's clock.

    A rule's `notice` is not weighed here: it was, in this cycle's decide, for the lock
    identity act.py then checks the fresh read against (same token and `Info`), on the
    cycle's clock the notice is recorded in. Weighing it again on the store's clock would
    let a skew of seconds between the two clocks hold back an action whose notice is over."""
    view = _backend_view(lock, policy, now, memory)
    result = _backend_ladder(view, complete, policy, memory)
    return result if isinstance(result, PlannedAction) else None


def decide_backend(
    observations: Sequence[Observation], policy: Policy, memory: MemoryView, now: datetime
) -> Partial:
    """Lock states, findings, planned actions and restraints for the S3-backend observations;
    `now` is the cycle's clock (memory's first-seen times are in it), each lock is aged by its
    own store's `server_now`."""
    out = Partial()
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
            view = _backend_view(lock, policy, observation.server_now, memory, observed_now=now)
            out.findings.extend(_backend_findings(view))
            # A notice is given for this very lock (the key its sightings are counted by), on
            # the cycle's clock (`now`, the clock the cycle records it in).
            workspace_id, holder_id = backend_lock_key(lock)
            result = held_for_notice(
                _backend_ladder(view, observation.complete, policy, memory),
                view.rule.notice,
                memory,
                now,
                key=(workspace_id, holder_id, ""),
            )
            out.add(view.state, result, where=(view.state.workspace_id, lock.store, lock.path))
    return out
