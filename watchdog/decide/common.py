"""What both ladders (TFC workspaces, S3-backend locks) share: their output types, the
read-only view of memory they age locks by, and the sightings a lock needs before it may be
cleared."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from watchdog.model import Finding, LockState, Notice, PlannedAction, Source

# Sightings of the same lock (same holder) before it may be cleared: one cycle could be a
# glimpse of a lock someone is about to release.
MIN_SIGHTINGS = 2


class MemoryView(Protocol):
    """What decide reads of the memory, and all it may touch: `watchdog.memory.Memory`
    satisfies it, but through this view decide can neither update nor save it (mypy rejects
    the call), so deciding stays pure."""

    def first_seen(
        self, workspace_id: str, holder_id: str, source: Source = Source.TFC
    ) -> datetime | None: ...

    def last_activity(
        self, workspace_id: str, holder_id: str, source: Source = Source.TFC
    ) -> datetime | None: ...

    def sightings(self, workspace_id: str, holder_id: str, source: Source = Source.TFC) -> int: ...

    def notice_at(self, workspace_id: str, holder_id: str, run_id: str) -> datetime | None: ...


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
    # Actions held back by a rule's `notice` (new ones are recorded and sent by the cycle).
    notices: tuple[Notice, ...] = ()


@dataclass
class Partial:
    """One ladder's share of a Decision, in the order it was made."""

    locks: list[LockState] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    planned: list[PlannedAction] = field(default_factory=list)
    restraints: list[Restraint] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)

    def add(
        self,
        lock: LockState | None,
        result: PlannedAction | Notice | str | None,
        *,
        where: tuple[str, str, str],
    ) -> None:
        """One workspace's or lock's lock state and what its ladder gave: an action, a notice
        (kept, its time put on the lock, and said as a restraint), why not, or nothing.
        `where` is the restraint's (workspace id, organization, workspace)."""
        if isinstance(result, Notice):
            self.notices.append(result)
            if lock is not None:
                lock = replace(lock, action_at=result.action_at)
            result = notice_reason(result)
        if lock is not None:
            self.locks.append(lock)
        if isinstance(result, PlannedAction):
            self.planned.append(result)
        elif result is not None:
            self.restraints.append(Restraint(*where, result))


def held_for_notice(
    result: PlannedAction | str | None,
    notice: timedelta | None,
    memory: MemoryView,
    now: datetime,
    *,
    key: tuple[str, str, str],
) -> PlannedAction | Notice | str | None:
    """A planned action whose rule has a `notice`: held back (a Notice) until the notice,
    given for this very lock (`key`: workspace id, holder id, run id), is `notice` old on
    `now`'s clock. Anything else passes through."""
    if not isinstance(result, PlannedAction) or notice is None:
        return result
    _, holder_id, run_id = key
    given = memory.notice_at(*key)
    if given is None:
        return Notice(result, now, now + notice, True, holder_id, run_id)
    if now < given + notice:
        return Notice(result, given, given + notice, False, holder_id, run_id)
    return result


def notice_reason(notice: Notice) -> str:
    """The restraint of a running notice: the same text every cycle (no ages), for every
    ladder."""
    action = notice.action
    holder = action.holder.label() if action.holder else "none"
    return (
        f"notice given {notice.given_at.isoformat()}: {action.kind.value} at "
        f"{notice.action_at.isoformat()} if the lock of {holder} is still there and stale"
    )
